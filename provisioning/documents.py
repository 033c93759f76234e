"""The policy documents and endpoint settings of one grant (the runbook's three documents).

All functions are pure: they take a ``GrantSpec`` and return plain,
JSON-serialisable dicts. ``build_plan`` gathers them into the plan an approver
sees and whose hash an approval is bound to.
"""
from __future__ import annotations

import hashlib
import json

from provisioning.arns import (
    Arn,
    dns_suffix,
    is_key_id_arn,
    parse_kms_key_arn,
    parse_replication_instance_arn,
    parse_role_arn,
    parse_secret_arn,
)
from provisioning.errors import InvalidInput
from provisioning.names import (
    ENGINES,
    MYSQL_FAMILY,
    validate_account_id,
    validate_endpoint_identifier,
    validate_endpoint_type,
    validate_engine,
    validate_region,
    validate_role_name,
)
from provisioning.ownership import validate_instance_id
from provisioning.spec import GrantSpec

POLICY_VERSION = "2012-10-17"
# The runbook's name for the role's inline policy.
ROLE_INLINE_POLICY_NAME = "ReadRemoteSecret"
# The runbook's Sids inside the role's own inline policy (the role is the
# portal's, so nothing else shares that document).
SECRET_STATEMENT_SID = "GetRemoteSecret"
KEY_STATEMENT_SID = "DecryptWithRemoteKmsKey"

SECRET_ACTIONS = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
KEY_ACTIONS = ["kms:Decrypt", "kms:DescribeKey"]

PLAN_KEYS = (
    "role_trust_policy",
    "role_inline_policy",
    "secret_policy_statement",
    "key_policy_statement",
    "endpoint_settings",
)


def _invalid(field: str, rule: str, diagnosis: str) -> InvalidInput:
    error = InvalidInput(field, rule)
    error.diagnosis = diagnosis
    return error


def validate_spec(spec: GrantSpec, *, require_key: bool = False) -> None:
    """Check every field of ``spec`` and that they agree with each other.

    Raises InvalidInput naming the first broken field. Mismatches between the
    secret ARN and the Remote account or region carry the diagnosis
    ``account_mismatch`` / ``region_mismatch`` instead of ``invalid_input``.
    """
    validate_instance_id(spec.instance_id)
    validate_account_id(spec.datalake.account_id, field="datalake_account_id")
    validate_account_id(spec.remote.account_id, field="remote_account_id")
    validate_region(spec.region, field="region", partition=spec.partition)
    validate_engine(spec.engine)
    validate_endpoint_type(spec.endpoint_type)
    validate_endpoint_identifier(spec.endpoint_identifier)
    validate_role_name(spec.role_name)
    secret = parse_secret_arn(spec.secret_arn)
    _check_owner(secret, spec, field="secret_arn", what="secret")
    if spec.kms_key_arn is not None:
        _key_arn(spec)
    elif require_key:
        raise InvalidInput("kms_key_arn", "is required to build the plan (discover it from the secret first)")
    if spec.replication_instance_arn is not None:
        rep = parse_replication_instance_arn(spec.replication_instance_arn)
        if rep.account != spec.datalake.account_id:
            raise _invalid(
                "replication_instance_arn",
                f"must be in the DataLake account {spec.datalake.account_id} (it is in {rep.account})",
                "account_mismatch",
            )
        if rep.region != spec.region:
            raise _invalid(
                "replication_instance_arn",
                f"must be in region {spec.region} (it is in {rep.region})",
                "region_mismatch",
            )
    if spec.database_name is not None and spec.engine in MYSQL_FAMILY:
        raise InvalidInput(
            "database_name", f"must be left empty for {spec.engine}: DMS refuses DatabaseName for MySQL-family engines"
        )
    parse_role_arn(spec.role_arn, field="role_name")


def _check_owner(arn: Arn, spec: GrantSpec, *, field: str, what: str) -> None:
    if arn.partition != spec.partition:
        raise _invalid(field, f"must be in partition {spec.partition} (it is in {arn.partition})", "invalid_input")
    if arn.account != spec.remote.account_id:
        raise _invalid(
            field,
            f"the {what} must be in the Remote account {spec.remote.account_id} (it is in {arn.account})",
            "account_mismatch",
        )
    if arn.region != spec.region:
        raise _invalid(
            field, f"the {what} must be in region {spec.region} (it is in {arn.region})", "region_mismatch"
        )


def _key_arn(spec: GrantSpec) -> str:
    if spec.kms_key_arn is None:
        raise InvalidInput("kms_key_arn", "is required to build the plan (discover it from the secret first)")
    key = parse_kms_key_arn(spec.kms_key_arn)
    _check_owner(key, spec, field="kms_key_arn", what="key")
    if not is_key_id_arn(key):
        # kms:Decrypt is authorised against the key ARN; an alias ARN in the
        # role's policy would match nothing.
        raise InvalidInput("kms_key_arn", "must name the key by id (key/<id>), not by alias; resolve the alias first")
    return key.raw


def via_service(spec: GrantSpec) -> str:
    """The ``kms:ViaService`` value for Secrets Manager in the grant's region."""
    return f"secretsmanager.{spec.region}.{dns_suffix(spec.partition)}"


def dms_source_arn_pattern(spec: GrantSpec) -> str:
    """The ``aws:SourceArn`` pattern of the trust policy: any DMS endpoint of the DataLake account."""
    return f"arn:{spec.partition}:dms:{spec.region}:{spec.datalake.account_id}:endpoint:*"


def role_trust_policy(spec: GrantSpec) -> dict:
    """Runbook document 1, trust policy: DMS (global and regional principal) may assume the role.

    The confused-deputy conditions pin the caller to DMS endpoints of the
    DataLake account in the grant's region.
    """
    suffix = dns_suffix(spec.partition)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": [f"dms.{suffix}", f"dms.{spec.region}.{suffix}"]},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": spec.datalake.account_id},
                    "ArnLike": {"aws:SourceArn": dms_source_arn_pattern(spec)},
                },
            }
        ],
    }


def role_inline_policy(spec: GrantSpec) -> dict:
    """Runbook document 1, inline policy: read the remote secret, decrypt with the remote key."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": SECRET_STATEMENT_SID,
                "Effect": "Allow",
                "Action": list(SECRET_ACTIONS),
                "Resource": spec.secret_arn,
            },
            {
                "Sid": KEY_STATEMENT_SID,
                "Effect": "Allow",
                "Action": list(KEY_ACTIONS),
                "Resource": _key_arn(spec),
            },
        ],
    }


def secret_policy_statement(spec: GrantSpec) -> dict:
    """Runbook document 2: the statement merged into the secret's resource policy.

    The principal is the exact role ARN, never the DataLake account root,
    which would let any principal of that account read the secret.
    """
    return {
        "Sid": spec.statement_sid,
        "Effect": "Allow",
        "Principal": {"AWS": spec.role_arn},
        "Action": list(SECRET_ACTIONS),
        "Resource": spec.secret_arn,
    }


def key_policy_statement(spec: GrantSpec) -> dict:
    """Runbook document 3: the statement merged into the key policy.

    ``kms:ViaService`` limits the role to decrypting through Secrets Manager
    in the grant's region.
    """
    return {
        "Sid": spec.statement_sid,
        "Effect": "Allow",
        "Principal": {"AWS": spec.role_arn},
        "Action": list(KEY_ACTIONS),
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": via_service(spec)}},
    }


def endpoint_settings(spec: GrantSpec) -> dict:
    """The CreateEndpoint keyword arguments (without Tags) for the grant's endpoint.

    Credentials come only from the secret: no UserName, Password,
    ServerName or Port, which DMS refuses next to a secret. DatabaseName is
    passed when given, except for MySQL-family engines.
    """
    settings_key = ENGINES[validate_engine(spec.engine)]
    settings: dict = {
        "EndpointIdentifier": spec.endpoint_identifier,
        "EndpointType": spec.endpoint_type,
        "EngineName": spec.engine,
    }
    if spec.database_name and spec.engine not in MYSQL_FAMILY:
        settings["DatabaseName"] = spec.database_name
    settings[settings_key] = {
        "SecretsManagerAccessRoleArn": spec.role_arn,
        # Cross-account GetSecretValue accepts only the full ARN.
        "SecretsManagerSecretId": spec.secret_arn,
    }
    return settings


def build_plan(spec: GrantSpec) -> dict:
    """Validate ``spec`` and return every document of the grant, keyed by ``PLAN_KEYS``.

    Requires ``spec.kms_key_arn`` (as a key ARN); raises InvalidInput otherwise.
    """
    validate_spec(spec, require_key=True)
    return {
        "role_trust_policy": role_trust_policy(spec),
        "role_inline_policy": role_inline_policy(spec),
        "secret_policy_statement": secret_policy_statement(spec),
        "key_policy_statement": key_policy_statement(spec),
        "endpoint_settings": endpoint_settings(spec),
    }


def canonical_json(document: object) -> str:
    """Compact JSON with sorted keys: the same document always gives the same text."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def plan_hash(plan: dict) -> str:
    """SHA-256 hex digest of the plan's canonical JSON; approvals are bound to it."""
    return hashlib.sha256(canonical_json(plan).encode("utf-8")).hexdigest()
