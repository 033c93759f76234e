"""Steps on the DataLake side: the DMS endpoint that reads the remote secret."""

from __future__ import annotations

from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import endpoint_settings
from provisioning.ownership import describe_owner, instance_tag, is_owned, needs_adoption, owner_tags
from provisioning.resources import endpoint_tags, find_endpoint
from provisioning.spec import GrantSpec
from provisioning.steps.result import StepResult

# DMS answers with these in another case than CreateEndpoint takes them
# (EndpointType "SOURCE" for "source").
_CASE_INSENSITIVE = frozenset({"EndpointType", "EngineName"})


def _as_found(current: dict, desired: dict) -> dict:
    """The settings of ``current`` that the plan sets, for the step's ``before``."""
    return {key: current.get(key) for key in desired}


def _difference(current: dict, desired: dict) -> dict:
    """ModifyEndpoint arguments bringing ``current`` to ``desired``; {} when equal.

    Settings objects are compared on the keys the plan sets (DMS fills in
    defaults for the others) and, when they differ, sent whole.
    """
    difference = {}
    for key, want in desired.items():
        if key == "EndpointIdentifier":
            continue
        have = current.get(key)
        if isinstance(want, dict):
            have = have if isinstance(have, dict) else {}
            if any(have.get(name) != value for name, value in want.items()):
                difference[key] = want
        elif key in _CASE_INSENSITIVE:
            if str(have or "").lower() != str(want).lower():
                difference[key] = want
        elif have != want:
            difference[key] = want
    return difference


def _taken(calls: AwsCalls, spec: GrantSpec, tags: dict[str, str]):
    return calls.permanent(
        f"A DMS endpoint named {spec.endpoint_identifier} already exists in account {spec.datalake.account_id} "
        f"({spec.region}) and belongs to {describe_owner(tags)}; the portal never takes it over. "
        "Choose another identifier.",
        diagnosis="endpoint_identifier_taken",
    )


def _adopt(calls: AwsCalls, dms, spec: GrantSpec, endpoint_arn: str, tags: dict[str, str]) -> bool:
    """Tag an endpoint this grant made before instance ids with the instance id; True if it did."""
    if not needs_adoption(tags, spec):
        return False
    calls(dms, "AddTagsToResource", ResourceArn=endpoint_arn, Tags=instance_tag(spec))
    return True


def create_endpoint(spec: GrantSpec, *, clients: GrantClients) -> StepResult:
    """Create the grant's DMS endpoint, or bring the grant's existing one to the plan.

    CreateEndpoint comes first; when DMS answers that the identifier is taken
    the endpoint is read and its ownership checked before anything else is
    written, so an endpoint that is not the grant's is never replaced or
    changed. An endpoint of that identifier owned by anyone else fails with
    ``endpoint_identifier_taken``; this grant's own endpoint gets a
    ModifyEndpoint with only the settings that differ. Outputs ``endpoint_arn``
    and ``target``: the endpoint ARN and the settings written.
    """
    calls = AwsCalls()
    dms = clients.datalake("dms")
    desired = endpoint_settings(spec)
    # No read first: AWS answers a taken identifier with
    # ResourceAlreadyExistsFault, and only then is the endpoint read to see
    # whose it is. (moto replaces the endpoint instead; the test suite makes
    # it answer as DMS does.)
    created = calls(dms, "CreateEndpoint", taken_codes=("ResourceAlreadyExistsFault",), Tags=owner_tags(spec), **desired)
    if created is not None:
        endpoint_arn = created["Endpoint"]["EndpointArn"]
        return StepResult(
            name="create_endpoint",
            changed=True,
            before=None,
            after=desired,
            aws_request_ids=calls.request_ids, aws_calls=calls.calls,
            outputs={
                "endpoint_arn": endpoint_arn,
                "target": {"arn": endpoint_arn, "sid": None, "document": desired},
            },
        )

    current = find_endpoint(calls, dms, spec.endpoint_identifier)
    if current is None:
        raise calls.retryable(
            f"The DMS endpoint identifier {spec.endpoint_identifier} was taken when the portal created the endpoint "
            "and is free or being deleted now; the retry creates it again",
            diagnosis="endpoint_identifier_taken",
        )
    endpoint_arn = current["EndpointArn"]
    tags = endpoint_tags(calls, dms, endpoint_arn)
    if not is_owned(tags, spec):
        raise _taken(calls, spec, tags)
    adopted = _adopt(calls, dms, spec, endpoint_arn, tags)
    difference = _difference(current, desired)
    if difference:
        calls(dms, "ModifyEndpoint", EndpointArn=endpoint_arn, **difference)
    return StepResult(
        name="create_endpoint",
        changed=adopted or bool(difference),
        before=_as_found(current, desired),
        after=desired,
        aws_request_ids=calls.request_ids, aws_calls=calls.calls,
        outputs={"endpoint_arn": endpoint_arn, "target": {"arn": endpoint_arn, "sid": None, "document": desired}},
    )


def delete_endpoint(spec: GrantSpec, *, clients: GrantClients) -> StepResult:
    """Delete the grant's DMS endpoint if it is this grant's.

    A missing endpoint (or one already being deleted) is success; one owned
    by anyone else is left alone (``outputs["skipped"]`` says why).
    """
    calls = AwsCalls()
    dms = clients.datalake("dms")
    current = find_endpoint(calls, dms, spec.endpoint_identifier)
    if current is None:
        return StepResult(
            name="delete_endpoint", changed=False, aws_request_ids=calls.request_ids, aws_calls=calls.calls
        )
    endpoint_arn = current["EndpointArn"]
    tags = endpoint_tags(calls, dms, endpoint_arn)
    if not is_owned(tags, spec):
        return StepResult(
            name="delete_endpoint",
            changed=False,
            aws_request_ids=calls.request_ids, aws_calls=calls.calls,
            outputs={
                "skipped": f"endpoint {spec.endpoint_identifier} is not owned by request {spec.grant_id} of this portal"
            },
        )
    _adopt(calls, dms, spec, endpoint_arn, tags)
    calls(dms, "DeleteEndpoint", missing_ok=True, EndpointArn=endpoint_arn)
    return StepResult(
        name="delete_endpoint",
        changed=True,
        before=_as_found(current, endpoint_settings(spec)),
        after=None,
        aws_request_ids=calls.request_ids,
        aws_calls=calls.calls,
        outputs={"endpoint_arn": endpoint_arn},
    )
