"""The last grant step: check the live documents together, then test the connection."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.errors import InvalidInput, ProvisioningError
from provisioning.evaluator import evaluate_access
from provisioning.resources import find_endpoint, read_key_policy, read_role_policy, read_secret_policy, resolve_key_arn
from provisioning.spec import GrantSpec
from provisioning.steps.result import StepResult

# The same budget as botocore's TestConnectionSucceeds waiter: 5 s x 60.
POLL_INTERVAL_SECONDS = 5.0
MAX_POLLS = 60


def _read_documents(pool: ThreadPoolExecutor, spec: GrantSpec, clients: GrantClients) -> list[tuple[AwsCalls, Future]]:
    """Start the three reads, each with its calls of its own, in the order they are evaluated in."""
    iam = clients.datalake("iam")
    secretsmanager = clients.remote("secretsmanager")
    kms = clients.remote("kms")

    def key_policy(calls: AwsCalls) -> tuple[str, dict | None]:
        key_arn = resolve_key_arn(calls, kms, spec.kms_key_arn)
        return key_arn, read_key_policy(calls, kms, key_arn)[1]

    reads = (
        lambda calls: read_role_policy(calls, iam, spec.role_name),
        lambda calls: read_secret_policy(calls, secretsmanager, spec.secret_arn)[1],
        key_policy,
    )
    started = []
    for read in reads:
        calls = AwsCalls()
        started.append((calls, pool.submit(read, calls)))
    return started


def _result(calls: AwsCalls, future: Future) -> Callable[[], object]:
    """A function returning ``future``'s value, or raising its error with every request id of the step."""

    def result():
        try:
            return future.result()
        except ProvisioningError as error:
            error.aws_request_ids = list(calls.request_ids)
            raise

    return result


def _access(calls: AwsCalls, spec: GrantSpec, role_policy, secret_policy, key_arn: str, key_policy) -> dict:
    decision = evaluate_access(
        role_arn=spec.role_arn,
        role_policies=[role_policy] if role_policy else [],
        secret_arn=spec.secret_arn,
        secret_policy=secret_policy,
        key_arn=key_arn,
        key_policy=key_policy,
        region=spec.region,
    )
    if not decision.allowed:
        raise calls.permanent(
            "The live policies do not let the role read the secret: " + "; ".join(decision.reasons),
            diagnosis=decision.diagnosis or "identity_policy_denies",
        )
    return {"role_inline_policy": role_policy, "secret_policy": secret_policy, "key_policy": key_policy}


def _connection(calls: AwsCalls, dms, endpoint_arn: str, instance_arn: str) -> dict | None:
    response = calls(
        dms,
        "DescribeConnections",
        missing_ok=True,
        Filters=[
            {"Name": "endpoint-arn", "Values": [endpoint_arn]},
            {"Name": "replication-instance-arn", "Values": [instance_arn]},
        ],
    )
    # Both filters are sent, but the pair is matched here too: not every
    # DMS implementation applies more than one filter.
    for connection in (response or {}).get("Connections", []):
        if connection.get("EndpointArn") == endpoint_arn and connection.get("ReplicationInstanceArn") == instance_arn:
            return connection
    return None


def _failed(calls: AwsCalls, connection: dict):
    return calls.permanent(
        "DMS could not connect to the database through the endpoint: "
        + (connection.get("LastFailureMessage") or "no reason given"),
        diagnosis="connection_failed",
    )


def _test_connection(
    calls: AwsCalls,
    spec: GrantSpec,
    clients: GrantClients,
    endpoint: dict | None,
    *,
    sleep: Callable[[float], None],
    poll_interval: float,
    max_polls: int,
) -> dict:
    dms = clients.datalake("dms")
    instance_arn = spec.replication_instance_arn
    if endpoint is None:
        raise calls.permanent(
            f"The DMS endpoint {spec.endpoint_identifier} does not exist; run create_endpoint first.",
            diagnosis="connection_failed",
        )
    endpoint_arn = endpoint["EndpointArn"]
    connection = _connection(calls, dms, endpoint_arn, instance_arn)
    status = (connection or {}).get("Status")
    # An already successful pair is not tested again (this also spares moto,
    # which fails a second TestConnection of the same pair).
    if status == "successful":
        return connection
    if status != "testing":
        calls(
            dms,
            "TestConnection",
            # The replication instance or endpoint is still being created.
            retry_codes={"InvalidResourceStateFault": "connection_failed"},
            ReplicationInstanceArn=instance_arn,
            EndpointArn=endpoint_arn,
        )
    for attempt in range(max_polls):
        connection = _connection(calls, dms, endpoint_arn, instance_arn)
        status = (connection or {}).get("Status")
        if status == "successful":
            return connection
        if status == "failed":
            raise _failed(calls, connection)
        if attempt + 1 < max_polls:
            sleep(poll_interval)
    raise calls.retryable(
        f"The DMS connection test of {spec.endpoint_identifier} was still {status or 'not reported'} after "
        f"{max_polls} polls",
        diagnosis="connection_failed",
    )


def verify(
    spec: GrantSpec,
    *,
    clients: GrantClients,
    sleep: Callable[[float], None] = time.sleep,
    poll_interval: float = POLL_INTERVAL_SECONDS,
    max_polls: int = MAX_POLLS,
) -> StepResult:
    """Check that the grant works, from the live documents.

    Reads the role's inline policy, the secret policy and the key policy
    (and the endpoint, with a replication instance) concurrently, each once,
    and evaluates them together as AWS does cross-account (all three must allow);
    a denial fails with the evaluator's diagnosis. With a replication
    instance, runs DMS TestConnection (unless the pair already tested
    successful) and polls DescribeConnections until it succeeds or fails
    (``connection_failed`` with DMS's message). Writes nothing else.
    """
    if not spec.kms_key_arn:
        raise InvalidInput("kms_key_arn", "is required to verify the grant (preflight discovers it from the secret)")
    calls = AwsCalls()
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="verify") as pool:
        reads = _read_documents(pool, spec, clients)
        if spec.replication_instance_arn:
            endpoint_calls = AwsCalls()
            dms = clients.datalake("dms")
            reads.append((endpoint_calls, pool.submit(find_endpoint, endpoint_calls, dms, spec.endpoint_identifier)))
    for read_calls, _ in reads:
        calls.request_ids.extend(read_calls.request_ids)
        calls.calls.extend(read_calls.calls)
    # Failures come out as when the reads were made one after another: the
    # documents' in their order, then the evaluation, then the endpoint's.
    results = [_result(calls, future) for _, future in reads]
    role_policy, secret_policy, (key_arn, key_policy) = (result() for result in results[:3])
    documents = _access(calls, spec, role_policy, secret_policy, key_arn, key_policy)
    outputs: dict = {"access": "allowed", "key_arn": key_arn}
    if spec.replication_instance_arn:
        connection = _test_connection(
            calls, spec, clients, results[3](), sleep=sleep, poll_interval=poll_interval, max_polls=max_polls
        )
        outputs["connection_status"] = connection.get("Status")
        outputs["endpoint_arn"] = connection.get("EndpointArn")
    return StepResult(
        name="verify", changed=False, before=None, after=documents, aws_request_ids=calls.request_ids, outputs=outputs,
        aws_calls=calls.calls,
    )
