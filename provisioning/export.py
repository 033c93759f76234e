"""A grant's change in the forms people apply by hand or keep in their own tooling.

- ``cloudformation_template``: the DataLake role as a CloudFormation template
  in the runbook's own shape (one ``AWS::IAM::Role`` with the trust policy,
  the inline policy ``ReadRemoteSecret`` and the owner tag).
- ``remote_documents``: the two documents to put on the Remote side, the
  secret's resource policy and the key policy, each with the grant's statement
  merged into the current policy when it is known.
- ``cli_commands``: the equivalent AWS CLI commands, reading the JSON files
  that ``cli_files`` returns.

Every document is taken from ``provisioning.documents``, so what is exported
is exactly what the portal applies.
"""
from __future__ import annotations

import json
import shlex

import yaml
from botocore import xform_name

from provisioning.arns import parse_secret_arn
from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import (
    POLICY_VERSION,
    ROLE_INLINE_POLICY_NAME,
    build_plan,
    key_policy_statement,
    secret_policy_statement,
)
from provisioning.names import ENGINES
from provisioning.ownership import owned_sids, owner_tags
from provisioning.resources import read_key_policy, read_secret_policy, resolve_key_arn
from provisioning.spec import GrantSpec
from provisioning.statements import merge_statement

# The runbook's logical id for the role.
ROLE_LOGICAL_ID = "DmsCrossAccountSecretRole"
KEY_POLICY_NAME = "default"
CLOUDFORMATION_DESCRIPTION_MAX = 1024

TRUST_POLICY_FILE = "role-trust-policy.json"
INLINE_POLICY_FILE = "role-inline-policy.json"
# The runbook's file names for the two Remote-side documents.
SECRET_POLICY_FILE = "secret-resource-policy.json"
KEY_POLICY_FILE = "kms-key-policy.json"


def _settings_file(spec: GrantSpec) -> str:
    return f"{xform_name(ENGINES[spec.engine], '-')}.json"


def cloudformation_template(spec: GrantSpec) -> str:
    """The grant's DataLake role as a CloudFormation YAML template.

    The role's ``AssumeRolePolicyDocument`` and its one inline policy are the
    plan's ``role_trust_policy`` and ``role_inline_policy``, value for value;
    the role carries the owner tag the portal puts on it.
    """
    plan = build_plan(spec)
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"IAM role in DataLake account {spec.datalake.account_id}, assumed by DMS, granting access to "
            f"the secret {spec.secret_arn} and its KMS key in Remote account {spec.remote.account_id} "
            f"(dms-access-portal {spec.instance_id} request {spec.grant_id})."
        )[:CLOUDFORMATION_DESCRIPTION_MAX],
        "Resources": {
            ROLE_LOGICAL_ID: {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": spec.role_name,
                    "AssumeRolePolicyDocument": plan["role_trust_policy"],
                    "Policies": [
                        {"PolicyName": ROLE_INLINE_POLICY_NAME, "PolicyDocument": plan["role_inline_policy"]}
                    ],
                    "Tags": owner_tags(spec),
                },
            }
        },
        "Outputs": {
            "RoleArn": {
                "Description": "Give this ARN to the Remote account's secret and key policies.",
                "Value": {"Fn::GetAtt": [ROLE_LOGICAL_ID, "Arn"]},
            }
        },
    }
    return yaml.safe_dump(template, sort_keys=False, default_flow_style=False, width=100)


def default_key_policy(spec: GrantSpec) -> dict:
    """A key policy holding only the Remote account root's administration statement.

    It is what a key's policy looks like when it was created without one; it
    stands in for the current key policy when that is not known.
    """
    root = f"arn:{spec.partition}:iam::{spec.remote.account_id}:root"
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Sid": "EnableRootPermissions", "Effect": "Allow", "Principal": {"AWS": root},
             "Action": "kms:*", "Resource": "*"}
        ],
    }


def remote_documents(
    spec: GrantSpec, *, current_secret_policy: dict | str | None = None, current_key_policy: dict | str | None = None
) -> dict:
    """The two Remote-side documents to apply: ``{"secret_policy": ..., "key_policy": ...}``.

    Each is the grant's statement merged into the current policy (every other
    statement kept). Without a current secret policy the result is the
    runbook's document 2; without a current key policy the statement is
    merged into ``default_key_policy`` (the runbook's document 3), because a
    key policy without the root statement would lock the owner out.
    """
    build_plan(spec)  # validates the spec, as every export does
    key_base = current_key_policy if current_key_policy else default_key_policy(spec)
    return {
        "secret_policy": merge_statement(current_secret_policy, secret_policy_statement(spec), replaces=owned_sids(spec)),
        "key_policy": merge_statement(key_base, key_policy_statement(spec), replaces=owned_sids(spec)),
    }


def read_current_policies(spec: GrantSpec, *, clients: GrantClients) -> tuple[dict | None, dict | None]:
    """``(secret policy, key policy)`` as AWS holds them now, read with the Remote
    provisioner role (read-only); None for a policy that does not exist."""
    calls = AwsCalls()
    secretsmanager = clients.remote("secretsmanager")
    kms = clients.remote("kms")
    _, secret_policy = read_secret_policy(calls, secretsmanager, spec.secret_arn, missing_ok=True)
    key_arn = resolve_key_arn(calls, kms, spec.kms_key_arn, missing_ok=True) if spec.kms_key_arn else None
    key_policy = read_key_policy(calls, kms, key_arn, missing_ok=True)[1] if key_arn else None
    return secret_policy, key_policy


def cli_files(
    spec: GrantSpec, *, current_secret_policy: dict | str | None = None, current_key_policy: dict | str | None = None
) -> dict[str, dict]:
    """The JSON files ``cli_commands`` reads, by file name."""
    plan = build_plan(spec)
    remote = remote_documents(spec, current_secret_policy=current_secret_policy, current_key_policy=current_key_policy)
    settings = plan["endpoint_settings"]
    return {
        TRUST_POLICY_FILE: plan["role_trust_policy"],
        INLINE_POLICY_FILE: plan["role_inline_policy"],
        SECRET_POLICY_FILE: remote["secret_policy"],
        KEY_POLICY_FILE: remote["key_policy"],
        _settings_file(spec): settings[ENGINES[spec.engine]],
    }


def _command(*parts: str) -> str:
    return " \\\n  ".join(parts)


def cli_commands(spec: GrantSpec) -> str:
    """The AWS CLI commands that make the grant's change, in the runbook's order.

    Run the DataLake commands with DataLake credentials and the Remote ones
    with Remote credentials; the JSON files are those of ``cli_files``.
    """
    plan = build_plan(spec)
    settings = plan["endpoint_settings"]
    settings_key = ENGINES[spec.engine]
    region = shlex.quote(spec.region)
    role = shlex.quote(spec.role_name)
    tags = shlex.quote(json.dumps(owner_tags(spec), separators=(",", ":")))
    secret = shlex.quote(spec.secret_arn)
    key = shlex.quote(spec.kms_key_arn or "")
    secret_name = parse_secret_arn(spec.secret_arn).resource_id
    endpoint = [
        "aws dms create-endpoint",
        f"--endpoint-identifier {shlex.quote(settings['EndpointIdentifier'])}",
        f"--endpoint-type {shlex.quote(settings['EndpointType'])}",
        f"--engine-name {shlex.quote(settings['EngineName'])}",
    ]
    if "DatabaseName" in settings:
        endpoint.append(f"--database-name {shlex.quote(settings['DatabaseName'])}")
    endpoint += [
        f"--{xform_name(settings_key, '-')} file://{_settings_file(spec)}",
        f"--tags {tags}",
        f"--region {region}",
    ]
    blocks = [
        f"# dms-access-portal {spec.instance_id} request {spec.grant_id}: DMS in {spec.datalake.account_id} reads {secret_name} "
        f"in {spec.remote.account_id} ({spec.region}).",
        "# 1. Create the IAM role (run in the DataLake account "
        f"{spec.datalake.account_id}).\n"
        + _command(
            "aws iam create-role",
            f"--role-name {role}",
            f"--assume-role-policy-document file://{TRUST_POLICY_FILE}",
            f"--tags {tags}",
            f"--region {region}",
        )
        + "\n"
        + _command(
            "aws iam put-role-policy",
            f"--role-name {role}",
            f"--policy-name {ROLE_INLINE_POLICY_NAME}",
            f"--policy-document file://{INLINE_POLICY_FILE}",
            f"--region {region}",
        ),
        "# 2. Put the secret's resource policy (run in the Remote account "
        f"{spec.remote.account_id}).\n"
        f"#    {SECRET_POLICY_FILE} replaces the whole policy: it must be the current policy\n"
        "#    (aws secretsmanager get-resource-policy) with the grant's statement merged in.\n"
        + _command(
            "aws secretsmanager put-resource-policy",
            f"--secret-id {secret}",
            f"--resource-policy file://{SECRET_POLICY_FILE}",
            "--block-public-policy",
            f"--region {region}",
        ),
        "# 3. Put the key policy (run in the Remote account "
        f"{spec.remote.account_id}).\n"
        f"#    {KEY_POLICY_FILE} replaces the whole policy: it must be the current policy\n"
        "#    (aws kms get-key-policy --policy-name default) with the grant's statement merged in,\n"
        "#    keeping the statement that lets the account administer the key.\n"
        + _command(
            "aws kms put-key-policy",
            f"--key-id {key}",
            f"--policy-name {KEY_POLICY_NAME}",
            f"--policy file://{KEY_POLICY_FILE}",
            f"--region {region}",
        ),
        "# 4. Create the DMS endpoint (run in the DataLake account "
        f"{spec.datalake.account_id}).\n" + _command(*endpoint),
    ]
    return "\n\n".join(blocks) + "\n"
