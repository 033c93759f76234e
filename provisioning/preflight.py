"""Preflight: read-only checks that a grant can work, before anyone approves it.

Runs at submission (the approver sees the result) and again as the first
provisioning step, then with ``at_apply`` (only what the writing steps do not
check again themselves). Independent reads run concurrently. Each problem becomes a failed ``Check`` with a diagnosis;
only a temporary AWS failure (throttling, 5xx) raises, so the caller can try
again later.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from provisioning.arns import parse_kms_key_arn
from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import build_plan, validate_spec
from provisioning.errors import InvalidInput, PermanentAwsError, RetryableAwsError
from provisioning.ownership import is_owned, owned_sids
from provisioning.resources import (
    describe_key,
    endpoint_tags,
    find_endpoint,
    read_key_policy,
    read_role,
    read_secret_policy,
    resolve_key_arn,
)
from provisioning.spec import GrantSpec
from provisioning.statements import merge_statement

AWS_MANAGED_SECRETS_KEY_ALIAS = "alias/aws/secretsmanager"
SECRET_KEYS = ("username", "password", "host", "port")
ORACLE_ASM_KEYS = ("asm_user", "asm_password", "asm_server")


@dataclass
class Check:
    """One preflight check: what was checked, and why it failed if it did."""

    name: str
    ok: bool
    message: str
    diagnosis: str | None = None


@dataclass
class PreflightReport:
    """All preflight checks of a grant.

    ``kms_key_arn`` is the full ARN of the secret's key (resolved from an id
    or alias); ``secret_keys`` the key NAMES of the secret's JSON when the
    shape was checked; values are never kept.
    """

    checks: list[Check] = field(default_factory=list)
    kms_key_arn: str | None = None
    secret_keys: list[str] | None = None
    aws_request_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(check.ok for check in self.checks)

    @property
    def diagnosis(self) -> str | None:
        """The diagnosis of the first failed check."""
        return next((check.diagnosis for check in self.checks if not check.ok), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, as the portal stores and shows it."""
        return {
            "ok": self.ok,
            "diagnosis": self.diagnosis,
            "kms_key_arn": self.kms_key_arn,
            "secret_keys": list(self.secret_keys) if self.secret_keys is not None else None,
            "checks": [asdict(check) for check in self.checks],
            "aws_request_ids": list(self.aws_request_ids),
        }


class _Failed(Exception):
    def __init__(self, message: str, diagnosis: str):
        super().__init__(message)
        self.message = message
        self.diagnosis = diagnosis


def _outcome(name: str, check: Callable[[], tuple[Any, str]]) -> tuple[Any, Check]:
    """Run ``check()``: its value (None when it failed) and the ``Check``
    recording it. Retryable errors propagate."""
    try:
        value, message = check()
    except _Failed as failure:
        return None, Check(name=name, ok=False, message=failure.message, diagnosis=failure.diagnosis)
    except (PermanentAwsError, InvalidInput) as error:
        return None, Check(name=name, ok=False, message=error.message, diagnosis=error.diagnosis)
    return value, Check(name=name, ok=True, message=message)


class _Checks:
    """The checks of one preflight, those that call AWS each in a thread.

    Each check started gets an ``AwsCalls`` of its own; the report lists the
    checks, and their request ids, in the order ``record`` is called, which
    is the order of the checks whatever order the threads finish in.
    """

    def __init__(self, pool: ThreadPoolExecutor, report: PreflightReport):
        self._pool = pool
        self._report = report
        self._calls: dict[str, list[AwsCalls]] = {}

    def start(self, name: str, check: Callable[[AwsCalls], tuple[Any, str]]) -> Future:
        """Start ``check(calls)`` in a thread; the future's result is ``(value, Check)``."""
        calls = AwsCalls()
        self._calls.setdefault(name, []).append(calls)
        return self._pool.submit(_outcome, name, lambda: check(calls))

    def read(self, name: str, read: Callable[[AwsCalls], Any]) -> Future:
        """Start ``read(calls)`` in a thread for check ``name``; the future's result is its value."""
        calls = AwsCalls()
        self._calls.setdefault(name, []).append(calls)
        return self._pool.submit(read, calls)

    def record(self, started: Future | tuple[Any, Check]) -> Any:
        """Add a check's outcome (waiting for it if started) to the report; its value."""
        value, check = started.result() if isinstance(started, Future) else started
        self._report.checks.append(check)
        return value

    def request_ids(self) -> list[str]:
        """Every request id so far, check by check in the report's order, then the rest."""
        names = [check.name for check in self._report.checks]
        ordered = names + [name for name in self._calls if name not in names]
        return [rid for name in ordered for calls in self._calls.get(name, []) for rid in calls.request_ids]


def _request_valid(spec: GrantSpec):
    # The named key may still be an alias here: preflight resolves it.
    validate_spec(replace(spec, kms_key_arn=None))
    if spec.kms_key_arn:
        key = parse_kms_key_arn(spec.kms_key_arn)
        if key.account != spec.remote.account_id:
            raise _Failed(
                f"The named key is in account {key.account}, not in the Remote account {spec.remote.account_id}.",
                "account_mismatch",
            )
        if key.region != spec.region:
            raise _Failed(f"The named key is in region {key.region}, not in {spec.region}.", "region_mismatch")
    return True, "Every field of the request is valid and the secret is in the Remote account and region."


def _provisioner_roles(remote: Future, datalake: Future, spec: GrantSpec):
    # Building the clients assumes both provisioner roles, one thread each;
    # a refusal is reported Remote first, as when they were built in turn.
    (secretsmanager, kms), (iam, dms) = remote.result(), datalake.result()
    return (secretsmanager, kms, iam, dms), (
        f"The portal can act in the DataLake account {spec.datalake.account_id} and the Remote account "
        f"{spec.remote.account_id}."
    )


def _secret_exists(calls: AwsCalls, secretsmanager, spec: GrantSpec):
    secret = calls(secretsmanager, "DescribeSecret", SecretId=spec.secret_arn)
    if secret.get("ARN") != spec.secret_arn:
        raise _Failed(f"The secret's full ARN is {secret.get('ARN')}; request it by that exact ARN.", "invalid_input")
    if secret.get("DeletedDate"):
        raise _Failed("The secret is scheduled for deletion.", "secret_not_found")
    return secret, f"Secret {secret.get('Name')} exists."


def _is_aws_managed_alias(key_id: str) -> bool:
    return key_id == AWS_MANAGED_SECRETS_KEY_ALIAS or key_id.endswith(":" + AWS_MANAGED_SECRETS_KEY_ALIAS)


_AWS_MANAGED = (
    "The secret is encrypted with the AWS-managed key aws/secretsmanager, which cannot be shared with "
    "another account. Re-encrypt it with a customer-managed key (UpdateSecret KmsKeyId=<CMK>)."
)


def _secret_key(calls: AwsCalls, kms, secret: dict, spec: GrantSpec):
    key_id = secret.get("KmsKeyId")
    if not key_id or _is_aws_managed_alias(key_id):
        raise _Failed(_AWS_MANAGED, "aws_managed_key")
    metadata = describe_key(calls, kms, key_id)
    if metadata.get("KeyManager") == "AWS":
        raise _Failed(_AWS_MANAGED, "aws_managed_key")
    return metadata, f"The secret's key {metadata['Arn']} is customer-managed."


def _key_usable(metadata: dict, spec: GrantSpec):
    arn = metadata["Arn"]
    if metadata.get("AWSAccountId") and metadata["AWSAccountId"] != spec.remote.account_id:
        raise _Failed(
            f"The key {arn} is in account {metadata['AWSAccountId']}, not in the Remote account; "
            "the portal can only change key policies there.",
            "account_mismatch",
        )
    if metadata.get("KeyState") != "Enabled":
        raise _Failed(f"The key {arn} is {metadata.get('KeyState')}, not Enabled.", "key_not_usable")
    spec_name = metadata.get("KeySpec") or metadata.get("CustomerMasterKeySpec")
    if spec_name != "SYMMETRIC_DEFAULT" or metadata.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
        raise _Failed(
            f"The key {arn} is {spec_name}/{metadata.get('KeyUsage')}; Secrets Manager needs a symmetric "
            "encryption key.",
            "key_not_usable",
        )
    return arn, f"The key {arn} is enabled and symmetric."


def _key_matches(calls: AwsCalls, kms, spec: GrantSpec, secret_key_arn: str):
    named = resolve_key_arn(calls, kms, spec.kms_key_arn, not_found_diagnosis="key_mismatch")
    if named != secret_key_arn:
        raise _Failed(
            f"The request names the key {spec.kms_key_arn}, but the secret is encrypted with {secret_key_arn}.",
            "key_mismatch",
        )
    return named, "The named key is the secret's key."


def _role_free(calls: AwsCalls, iam, spec: GrantSpec):
    role = read_role(calls, iam, spec.role_name)
    if role is None:
        return None, f"No role named {spec.role_name} exists yet."
    if not is_owned(role.tags, spec):
        raise _Failed(
            f"A role named {spec.role_name} already exists and is not this request's; choose another role name.",
            "role_name_taken",
        )
    return role, f"The role {spec.role_name} exists and belongs to this request."


def _endpoint_free(calls: AwsCalls, dms, spec: GrantSpec):
    endpoint = find_endpoint(calls, dms, spec.endpoint_identifier)
    if endpoint is None:
        return None, f"No DMS endpoint named {spec.endpoint_identifier} exists yet."
    if not is_owned(endpoint_tags(calls, dms, endpoint["EndpointArn"]), spec):
        raise _Failed(
            f"A DMS endpoint named {spec.endpoint_identifier} already exists and is not this request's; "
            "choose another identifier.",
            "endpoint_identifier_taken",
        )
    return endpoint, f"The endpoint {spec.endpoint_identifier} exists and belongs to this request."


def _plan_sizes(calls: AwsCalls, spec: GrantSpec, key_arn: str):
    """The plan for ``key_arn``, once its own documents are known to fit."""
    plan = build_plan(replace(spec, kms_key_arn=key_arn))
    calls.check_size("trust_policy", plan["role_trust_policy"])
    calls.check_size("role_inline_policies", [plan["role_inline_policy"]])
    return plan, "The role's documents are within AWS limits."


def _merged_sizes(calls: AwsCalls, spec: GrantSpec, plan: dict, secret_policy: Future, key_policy: Future):
    # The reads ran concurrently; their failures count in the order they were made in before.
    secret_size = calls.check_size(
        "secret_policy", merge_statement(secret_policy.result(), plan["secret_policy_statement"], replaces=owned_sids(spec))
    )
    key_size = calls.check_size(
        "key_policy", merge_statement(key_policy.result(), plan["key_policy_statement"], replaces=owned_sids(spec))
    )
    return plan, (
        f"After the merge the secret policy is {secret_size} characters and the key policy "
        f"{key_size} bytes, within AWS limits."
    )


def _secret_shape(calls: AwsCalls, secretsmanager, spec: GrantSpec):
    response = calls(secretsmanager, "GetSecretValue", SecretId=spec.secret_arn)
    text = response.pop("SecretString", None)
    response.pop("SecretBinary", None)
    try:
        document = json.loads(text) if text is not None else None
    except ValueError:
        document = None  # the parser's error quotes the text: never let it out
    del text
    if not isinstance(document, dict):
        raise _Failed(
            "The secret value is not a JSON object; DMS needs one with the keys " + ", ".join(SECRET_KEYS) + ".",
            "secret_shape_invalid",
        )
    names = sorted(str(name) for name in document)
    del document
    required = list(SECRET_KEYS)
    if spec.engine == "oracle" and any(name.startswith("asm_") for name in names):
        required += ORACLE_ASM_KEYS
    missing = [name for name in required if name not in names]
    if missing:
        raise _Failed(
            "The secret's JSON lacks the key(s) " + ", ".join(missing) + " (names are case-sensitive).",
            "secret_shape_invalid",
        )
    return names, "The secret's JSON has the keys DMS reads."


# The most AWS reads a preflight has in flight at once.
MAX_CONCURRENT_READS = 6


def preflight(
    spec: GrantSpec, *, clients: GrantClients, shape_check: bool = False, at_apply: bool = False
) -> PreflightReport:
    """Check, without changing anything, that ``spec`` can be granted.

    The secret exists in the Remote account and region; it is encrypted with
    an enabled, symmetric, customer-managed key in that account (else
    ``aws_managed_key`` / ``key_not_usable``), the one the request names if it
    names one (``key_mismatch``); the role name and endpoint identifier are
    free or this grant's; the merged policies fit AWS's size limits. With
    ``shape_check`` the secret is read once to check its JSON key names
    (``secret_shape_invalid``); only the names are kept.

    ``at_apply``: the check right before the grant's first write. It leaves
    out what the writing steps read and check again themselves just before
    they write (the role name, the endpoint identifier, the policy sizes):
    ``create_role`` and ``create_endpoint`` check ownership when AWS says the
    name is taken, and both policy steps check the merged size before their
    put. What remains is what no writing step reads: the secret, its key
    (``kms_key_arn``, which the portal compares with the approved plan) and
    the named key.

    Independent reads run concurrently, sharing ``clients``' clients; the
    report lists the checks in the same order whatever order they finish in,
    and a retryable error is the first one in that order.
    """
    report = PreflightReport()
    # An invalid request is not worth a call to AWS.
    valid, check = _outcome("request_valid", lambda: _request_valid(spec))
    report.checks.append(check)
    if not valid:
        return report
    checks = None
    try:
        with ThreadPoolExecutor(max_workers=MAX_CONCURRENT_READS, thread_name_prefix="preflight") as pool:
            checks = _Checks(pool, report)
            _check_aws(checks, pool, report, spec, clients, shape_check=shape_check, at_apply=at_apply)
    except RetryableAwsError as error:
        error.aws_request_ids = checks.request_ids() if checks is not None else []
        raise
    report.aws_request_ids = checks.request_ids()
    return report


def _check_aws(
    checks: _Checks,
    pool: ThreadPoolExecutor,
    report: PreflightReport,
    spec: GrantSpec,
    clients: GrantClients,
    *,
    shape_check: bool,
    at_apply: bool,
) -> None:
    """The checks that ask AWS, each started as soon as what it needs is known."""
    remote = pool.submit(lambda: (clients.remote("secretsmanager"), clients.remote("kms")))
    datalake = pool.submit(lambda: (clients.datalake("iam"), clients.datalake("dms")))
    reachable = checks.record(_outcome("provisioner_roles", lambda: _provisioner_roles(remote, datalake, spec)))
    if not reachable:
        return
    secretsmanager, kms, iam, dms = reachable

    secret_started = checks.start("secret_exists", lambda calls: _secret_exists(calls, secretsmanager, spec))
    names_free = []
    if not at_apply:
        names_free = [
            checks.start("role_name_available", lambda calls: _role_free(calls, iam, spec)),
            checks.start("endpoint_identifier_available", lambda calls: _endpoint_free(calls, dms, spec)),
        ]
    secret = checks.record(secret_started)
    shape = secret and shape_check and checks.start("secret_shape", lambda calls: _secret_shape(calls, secretsmanager, spec))
    metadata = secret and checks.record(
        checks.start("customer_managed_key", lambda calls: _secret_key(calls, kms, secret, spec))
    )
    key_arn = metadata and checks.record(_outcome("key_usable", lambda: _key_usable(metadata, spec)))
    sizes = None
    if key_arn:
        report.kms_key_arn = key_arn
        matches = spec.kms_key_arn and checks.start("key_matches", lambda calls: _key_matches(calls, kms, spec, key_arn))
        if not at_apply:
            sizes = _sizes(checks, spec, secretsmanager, kms, key_arn)
        if matches:
            checks.record(matches)
    for started in names_free:
        checks.record(started)
    if sizes is not None:
        checks.record(sizes())
    if shape:
        report.secret_keys = checks.record(shape)


def _sizes(checks: _Checks, spec: GrantSpec, secretsmanager, kms, key_arn: str) -> Callable[[], tuple[Any, Check]]:
    """Start the reads of the size check; a function waiting for its outcome."""
    planned = _outcome("policy_sizes", lambda: _plan_sizes(AwsCalls(), spec, key_arn))
    plan = planned[0]
    if not plan:
        return lambda: planned
    secret_policy = checks.read("policy_sizes", lambda calls: read_secret_policy(calls, secretsmanager, spec.secret_arn)[1])
    key_policy = checks.read("policy_sizes", lambda calls: read_key_policy(calls, kms, key_arn)[1])
    return lambda: _outcome("policy_sizes", lambda: _merged_sizes(AwsCalls(), spec, plan, secret_policy, key_policy))
