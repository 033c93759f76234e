"""Reading the live state of a grant's AWS resources.

Shared by the steps (which diff it against the plan), preflight and verify.
Each reader makes its calls through the step's ``AwsCalls`` and returns plain
data, or None for a resource that does not exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from provisioning.arns import is_key_id_arn, parse_kms_key_arn
from provisioning.aws_calls import AwsCalls
from provisioning.documents import ROLE_INLINE_POLICY_NAME
from provisioning.errors import InvalidInput

KEY_POLICY_NAME = "default"
# DMS reports an endpoint being deleted until it is gone; for the portal it is gone.
GONE_ENDPOINT_STATUSES = frozenset({"deleting"})


@dataclass(frozen=True)
class RoleState:
    """An IAM role as GetRole shows it."""

    arn: str
    role_id: str
    trust_policy: dict | None
    tags: dict[str, str]


def parse_policy(value: Any, *, what: str) -> dict | None:
    """A policy document as a dict, from a dict, JSON text or the URL-encoded
    JSON text IAM returns; None for no policy."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            text = unquote(text)
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"the {what} is not valid JSON ({error.msg} at {error.pos})") from error
        if isinstance(document, dict):
            return document
    raise ValueError(f"the {what} is not a JSON object")


def _policy_or_fail(calls: AwsCalls, value: Any, *, what: str, diagnosis: str) -> dict | None:
    try:
        return parse_policy(value, what=what)
    except ValueError as error:
        raise calls.permanent(
            f"{error}; fix it by hand before the portal can merge into it", diagnosis=diagnosis
        ) from error


def read_role(calls: AwsCalls, iam: Any, role_name: str) -> RoleState | None:
    """The role named ``role_name`` (GetRole includes its tags), or None."""
    response = calls(iam, "GetRole", missing_ok=True, RoleName=role_name)
    if response is None:
        return None
    role = response["Role"]
    tags = {tag["Key"]: tag["Value"] for tag in role.get("Tags") or []}
    trust = _policy_or_fail(
        calls, role.get("AssumeRolePolicyDocument"), what="trust policy of the role", diagnosis="aws_request_rejected"
    )
    return RoleState(arn=role["Arn"], role_id=role["RoleId"], trust_policy=trust, tags=tags)


def read_role_policy(
    calls: AwsCalls, iam: Any, role_name: str, policy_name: str = ROLE_INLINE_POLICY_NAME
) -> dict | None:
    """The role's inline policy ``policy_name``, or None (no role or no such policy)."""
    response = calls(iam, "GetRolePolicy", missing_ok=True, RoleName=role_name, PolicyName=policy_name)
    if response is None:
        return None
    return _policy_or_fail(
        calls, response.get("PolicyDocument"), what="inline policy of the role", diagnosis="aws_request_rejected"
    )


def read_secret_policy(
    calls: AwsCalls, secretsmanager: Any, secret_arn: str, *, missing_ok: bool = False
) -> tuple[bool, dict | None]:
    """``(secret exists, its resource policy or None)``.

    A missing secret raises (diagnosis ``secret_not_found``) unless ``missing_ok``.
    """
    response = calls(secretsmanager, "GetResourcePolicy", missing_ok=missing_ok, SecretId=secret_arn)
    if response is None:
        return False, None
    policy = _policy_or_fail(
        calls, response.get("ResourcePolicy"), what="secret's resource policy", diagnosis="aws_request_rejected"
    )
    return True, policy


def describe_key(
    calls: AwsCalls, kms: Any, key_id: str, *, missing_ok: bool = False, not_found_diagnosis: str = "key_not_usable"
) -> dict | None:
    """KeyMetadata of ``key_id`` (key id, key ARN, alias name or alias ARN)."""
    response = calls(kms, "DescribeKey", missing_ok=missing_ok, not_found_diagnosis=not_found_diagnosis, KeyId=key_id)
    return None if response is None else response["KeyMetadata"]


def is_key_arn(value: str) -> bool:
    """True when ``value`` is a full KMS key ARN (not an alias, not a bare id)."""
    try:
        return is_key_id_arn(parse_kms_key_arn(value))
    except InvalidInput:
        return False


def resolve_key_arn(
    calls: AwsCalls, kms: Any, key_id: str, *, missing_ok: bool = False, not_found_diagnosis: str = "key_not_usable"
) -> str | None:
    """The key ARN behind ``key_id``; asks KMS only when it is not a key ARN already."""
    if is_key_arn(key_id):
        return key_id
    metadata = describe_key(calls, kms, key_id, missing_ok=missing_ok, not_found_diagnosis=not_found_diagnosis)
    return None if metadata is None else metadata["Arn"]


def read_key_policy(calls: AwsCalls, kms: Any, key_arn: str, *, missing_ok: bool = False) -> tuple[bool, dict | None]:
    """``(key exists, its default key policy)``. KMS key policies are not
    cross-account: call with the key owner's credentials."""
    response = calls(
        kms,
        "GetKeyPolicy",
        missing_ok=missing_ok,
        not_found_diagnosis="key_not_usable",
        KeyId=key_arn,
        PolicyName=KEY_POLICY_NAME,
    )
    if response is None:
        return False, None
    return True, _policy_or_fail(calls, response.get("Policy"), what="key policy", diagnosis="key_not_usable")


def find_endpoint(calls: AwsCalls, dms: Any, endpoint_identifier: str) -> dict | None:
    """The DMS endpoint with ``endpoint_identifier``, unless absent or being deleted."""
    response = calls(
        dms,
        "DescribeEndpoints",
        missing_ok=True,
        Filters=[{"Name": "endpoint-id", "Values": [endpoint_identifier]}],
    )
    for endpoint in (response or {}).get("Endpoints", []):
        # Identifiers are unique per account and region, case-insensitively.
        if endpoint.get("EndpointIdentifier", "").lower() == endpoint_identifier.lower():
            if str(endpoint.get("Status", "")).lower() in GONE_ENDPOINT_STATUSES:
                return None
            return endpoint
    return None


def endpoint_tags(calls: AwsCalls, dms: Any, endpoint_arn: str) -> dict[str, str]:
    """The endpoint's tags (provisioning.ownership says whose they make it)."""
    response = calls(dms, "ListTagsForResource", missing_ok=True, ResourceArn=endpoint_arn)
    return {tag["Key"]: tag.get("Value", "") for tag in (response or {}).get("TagList", []) if "Key" in tag}
