"""The provisioner role templates an account owner deploys to onboard an account.

They must deploy (cfn-lint clean) and grant the portal nothing beyond what its
provisioning steps call, on nothing beyond the resources those steps touch.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import parliament
import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

from provisioning.spec import INSTANCE_TAG_KEY, OWNER_TAG_KEY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DATALAKE = DEPLOY / "cloudformation" / "datalake-provisioner-role.yaml"
REMOTE = DEPLOY / "cloudformation" / "remote-provisioner-role.yaml"
# One region per partition, so partition-specific ARNs and services are checked.
LINT_REGIONS = ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"]
ACCOUNT_ARNS = {
    "role": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*",
    "endpoint": "arn:${AWS::Partition}:dms:*:${AWS::AccountId}:endpoint:*",
    "rep": "arn:${AWS::Partition}:dms:*:${AWS::AccountId}:rep:*",
    "secret": "arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:*",
    "key": "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*",
}

DATALAKE_ACTIONS = {
    "iam:GetRole", "iam:CreateRole", "iam:TagRole", "iam:ListRoleTags",
    "iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:GetRolePolicy",
    "iam:ListRolePolicies", "iam:DeleteRolePolicy", "iam:DeleteRole", "iam:PassRole",
    "dms:CreateEndpoint", "dms:ModifyEndpoint", "dms:DeleteEndpoint", "dms:DescribeEndpoints",
    "dms:AddTagsToResource", "dms:ListTagsForResource", "dms:TestConnection",
    "dms:DescribeConnections", "dms:DescribeReplicationInstances",
    "secretsmanager:DescribeSecret",
}
REMOTE_ACTIONS = {
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy",
    "secretsmanager:PutResourcePolicy", "secretsmanager:DeleteResourcePolicy",
    "secretsmanager:ValidateResourcePolicy",
    "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy",
}
SHAPE_CHECK_ACTIONS = {"secretsmanager:GetSecretValue", "kms:Decrypt"}
# AWS authorises these only against "*" (no resource-level permissions).
STAR_ONLY_ACTIONS = {
    "dms:CreateEndpoint", "dms:DescribeEndpoints", "dms:DescribeConnections",
    "dms:DescribeReplicationInstances",
}

_NO_VALUE = object()


def _templates() -> list[Path]:
    candidates = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml", ".json"})
    return [p for p in candidates if "AWSTemplateFormatVersion" in p.read_text()]


def _load(path: Path) -> dict:
    template, matches = decode(str(path))
    assert not matches, [str(m) for m in matches]
    return template


def _resolve(node, conditions: dict[str, bool]):
    """Evaluate Fn::If for one choice of condition values; drop AWS::NoValue."""
    if isinstance(node, dict):
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            return _resolve(when_true if conditions[name] else when_false, conditions)
        resolved = {key: _resolve(value, conditions) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not _NO_VALUE}
    if isinstance(node, list):
        return [item for item in (_resolve(x, conditions) for x in node) if item is not _NO_VALUE]
    return node


def _condition_choices(template: dict) -> list[dict[str, bool]]:
    names = sorted(template.get("Conditions", {}))
    choices = itertools.product([False, True], repeat=len(names))
    return [dict(zip(names, values)) for values in choices]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _roles(template: dict) -> dict[str, dict]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role"
    }


def _identity_statements(template: dict, conditions: dict[str, bool]) -> list[dict]:
    """Every statement of every identity policy in the template, for one condition choice."""
    statements = []
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])]
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents = [resource["Properties"]["PolicyDocument"]]
        else:
            continue
        for document in documents:
            statements.extend(_as_list(_resolve(document, conditions)["Statement"]))
    return statements


def _all_statements(template: dict) -> list[dict]:
    return [s for c in _condition_choices(template) for s in _identity_statements(template, c)]


def _allowed_actions(statements: list[dict]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in _as_list(s["Action"])}


def _allowing(statements: list[dict], action: str) -> list[dict]:
    return [s for s in statements if s["Effect"] == "Allow" and action in _as_list(s["Action"])]


def _resources(statement: dict) -> list[str]:
    return [r["Fn::Sub"] if isinstance(r, dict) else r for r in _as_list(statement["Resource"])]


@pytest.fixture(scope="module")
def datalake() -> dict:
    return _load(DATALAKE)


@pytest.fixture(scope="module")
def remote() -> dict:
    return _load(REMOTE)


def test_both_provisioner_templates_are_shipped():
    assert {DATALAKE, REMOTE} <= set(_templates())


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_template_is_lint_clean(path):
    matches = lint_file(path, config=ManualArgs(regions=LINT_REGIONS))
    assert [str(m) for m in matches] == []


@pytest.mark.parametrize(
    ("path", "shape_check", "expected"),
    [
        (DATALAKE, None, DATALAKE_ACTIONS),
        (REMOTE, False, REMOTE_ACTIONS),
        (REMOTE, True, REMOTE_ACTIONS | SHAPE_CHECK_ACTIONS),
    ],
    ids=["datalake", "remote", "remote-with-shape-check"],
)
def test_role_is_allowed_exactly_the_actions_the_steps_use(path, shape_check, expected):
    template = _load(path)
    conditions = {} if shape_check is None else {"ShapeCheckAllowed": shape_check}
    assert _allowed_actions(_identity_statements(template, conditions)) == expected


@pytest.mark.parametrize("path", [DATALAKE, REMOTE], ids=["datalake", "remote"])
def test_no_wildcard_or_inverted_action_or_resource(path):
    for statement in _all_statements(_load(path)):
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, action


@pytest.mark.parametrize("path", [DATALAKE, REMOTE], ids=["datalake", "remote"])
def test_star_resource_only_where_aws_allows_nothing_narrower(path):
    for statement in _all_statements(_load(path)):
        if statement["Effect"] == "Allow" and "*" in _resources(statement):
            assert set(_as_list(statement["Action"])) <= STAR_ONLY_ACTIONS, statement


def test_datalake_iam_and_dms_resources_stay_in_the_datalake_account(datalake):
    for statement in _all_statements(datalake):
        for action in _as_list(statement["Action"]):
            if action.startswith("iam:"):
                own = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${RoleName}"
                allowed = [[ACCOUNT_ARNS["role"]]] + ([[own]] if statement["Effect"] == "Deny" else [])
                assert _resources(statement) in allowed, statement
            elif action.startswith("dms:") and action not in STAR_ONLY_ACTIONS:
                assert set(_resources(statement)) <= {ACCOUNT_ARNS["endpoint"], ACCOUNT_ARNS["rep"]}


def test_datalake_reaches_remote_secrets_only_to_describe_them(datalake):
    secret_statements = [
        s for s in _all_statements(datalake)
        if any(a.startswith("secretsmanager:") for a in _as_list(s["Action"]))
    ]
    assert secret_statements
    for statement in secret_statements:
        assert _as_list(statement["Action"]) == ["secretsmanager:DescribeSecret"]
        assert _resources(statement) == ["arn:${AWS::Partition}:secretsmanager:*:*:secret:*"]


def test_remote_resources_stay_in_the_remote_account(remote):
    for statement in _all_statements(remote):
        if statement["Effect"] != "Allow":
            continue
        service = {a.split(":")[0] for a in _as_list(statement["Action"])}
        expected = {"secretsmanager": ACCOUNT_ARNS["secret"], "kms": ACCOUNT_ARNS["key"]}
        assert len(service) == 1 and _resources(statement) == [expected[service.pop()]], statement


INSTANCE = {"Ref": "PortalInstanceId"}


def test_pass_role_only_to_dms_and_only_owned_roles(datalake):
    statements = _allowing(_all_statements(datalake), "iam:PassRole")
    assert statements
    for statement in statements:
        condition = statement["Condition"]
        assert condition["StringEquals"] == {
            "iam:PassedToService": "dms.amazonaws.com",
            f"aws:ResourceTag/{INSTANCE_TAG_KEY}": INSTANCE,
        }
        assert condition["Null"] == {f"aws:ResourceTag/{OWNER_TAG_KEY}": "false"}
        assert _resources(statement) == [ACCOUNT_ARNS["role"]]


@pytest.mark.parametrize(
    ("action", "tag_condition", "needs_request_id"),
    [
        ("iam:CreateRole", "aws:RequestTag", True),
        ("iam:TagRole", "aws:RequestTag", False),
        ("iam:UpdateAssumeRolePolicy", "aws:ResourceTag", True),
        ("iam:PutRolePolicy", "aws:ResourceTag", True),
        ("iam:DeleteRolePolicy", "aws:ResourceTag", True),
        ("iam:DeleteRole", "aws:ResourceTag", True),
        ("dms:CreateEndpoint", "aws:RequestTag", True),
        ("dms:ModifyEndpoint", "aws:ResourceTag", True),
        ("dms:DeleteEndpoint", "aws:ResourceTag", True),
        ("dms:AddTagsToResource", "aws:RequestTag", False),
    ],
)
def test_writes_need_this_portal_instances_tag(datalake, action, tag_condition, needs_request_id):
    # Every statement granting the action must carry the condition: Allow
    # statements add up, so one unconditioned grant would open it to all.
    # The instance-id tag must have this deployment's value, not just be
    # there: another portal's roles and endpoints are out of reach.
    statements = _allowing(_all_statements(datalake), action)
    assert statements
    for statement in statements:
        assert statement["Condition"]["StringEquals"][f"{tag_condition}/{INSTANCE_TAG_KEY}"] == INSTANCE, statement
        if needs_request_id:
            assert statement["Condition"]["Null"] == {f"{tag_condition}/{OWNER_TAG_KEY}": "false"}, statement


@pytest.mark.parametrize(
    ("action", "condition_key"),
    [("iam:TagRole", "aws:ResourceTag"), ("dms:AddTagsToResource", "aws:ResourceTag")],
)
def test_another_instances_resources_are_never_retagged(datalake, action, condition_key):
    key = f"{condition_key}/{INSTANCE_TAG_KEY}"
    denies = [s for s in _all_statements(datalake) if s["Effect"] == "Deny" and action in _as_list(s["Action"])]
    assert any(
        s.get("Condition") == {"StringNotEquals": {key: INSTANCE}, "Null": {key: "false"}} for s in denies
    ), denies


def test_the_provisioner_role_never_tags_itself(datalake):
    # Tagged with the instance id it could rewrite its own policy.
    denies = [s for s in _all_statements(datalake) if s["Effect"] == "Deny" and "iam:TagRole" in _as_list(s["Action"])]
    own_arn = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${RoleName}"
    assert any(_resources(s) == [own_arn] and "Condition" not in s for s in denies)


@pytest.mark.parametrize("path", [DATALAKE, REMOTE], ids=["datalake", "remote"])
def test_the_instance_id_parameter_has_the_portals_syntax(path):
    from provisioning.ownership import INSTANCE_ID_PATTERN

    parameter = _load(path)["Parameters"]["PortalInstanceId"]
    assert "Default" not in parameter
    assert parameter["AllowedPattern"] == f"^{INSTANCE_ID_PATTERN.pattern}$"


def test_secret_values_are_readable_only_after_opting_in(datalake, remote):
    assert not _allowed_actions(_all_statements(datalake)) & SHAPE_CHECK_ACTIONS
    parameter = remote["Parameters"]["AllowSecretShapeCheck"]
    assert parameter["Default"] == "false"
    assert sorted(parameter["AllowedValues"]) == ["false", "true"]
    assert remote["Conditions"]["ShapeCheckAllowed"] == {
        "Fn::Equals": [{"Ref": "AllowSecretShapeCheck"}, "true"]
    }
    without = _identity_statements(remote, {"ShapeCheckAllowed": False})
    with_check = _identity_statements(remote, {"ShapeCheckAllowed": True})
    assert not _allowed_actions(without) & SHAPE_CHECK_ACTIONS
    assert _allowed_actions(with_check) >= SHAPE_CHECK_ACTIONS


def test_shape_check_decrypts_only_through_secrets_manager(remote):
    statements = _allowing(_identity_statements(remote, {"ShapeCheckAllowed": True}), "kms:Decrypt")
    assert statements
    for statement in statements:
        assert statement["Condition"] == {
            "StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}
        }


@pytest.mark.parametrize(
    ("action", "condition"),
    [
        ("kms:PutKeyPolicy", {"Bool": {"kms:BypassPolicyLockoutSafetyCheck": "true"}}),
        (
            "secretsmanager:PutResourcePolicy",
            {"Bool": {"secretsmanager:BlockPublicPolicy": "false"}},
        ),
    ],
)
def test_remote_policy_safety_checks_cannot_be_switched_off(remote, action, condition):
    denies = [
        s for s in _all_statements(remote)
        if s["Effect"] == "Deny" and action in _as_list(s["Action"])
    ]
    assert any(s["Condition"] == condition and _resources(s) == ["*"] for s in denies)


@pytest.mark.parametrize("path", [DATALAKE, REMOTE], ids=["datalake", "remote"])
def test_only_the_portal_with_the_external_id_can_assume_the_role(path):
    template = _load(path)
    (role,) = _roles(template).values()
    statements = _as_list(role["AssumeRolePolicyDocument"]["Statement"])
    assert statements == [
        {
            "Sid": "PortalAssumesWithExternalId",
            "Effect": "Allow",
            "Principal": {"AWS": {"Ref": "PortalPrincipalArn"}},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}},
                # Only this portal instance's sessions (GrantSpec.session_name).
                "StringLike": {"sts:RoleSessionName": {"Fn::Sub": "portal-${PortalInstanceId}-req-*"}},
            },
        }
    ]
    external_id = template["Parameters"]["ExternalId"]
    assert external_id["NoEcho"] is True
    assert "Default" not in external_id and external_id["MinLength"] >= 2
    assert "Default" not in template["Parameters"]["PortalPrincipalArn"]


@pytest.mark.parametrize("path", [DATALAKE, REMOTE], ids=["datalake", "remote"])
def test_role_name_is_a_parameter_and_the_arn_an_output(path):
    template = _load(path)
    (role,) = _roles(template).values()
    assert role["RoleName"] == {"Ref": "RoleName"}
    assert template["Parameters"]["RoleName"]["Default"]
    assert template["Outputs"]["RoleArn"]["Value"] == {"Fn::GetAtt": ["ProvisionerRole", "Arn"]}


@pytest.mark.parametrize("path", [DATALAKE, REMOTE], ids=["datalake", "remote"])
def test_provisioner_role_is_not_marked_as_portal_owned(path):
    # A provisioner role carrying the ownership tag could rewrite or delete itself.
    (role,) = _roles(_load(path)).values()
    assert not {OWNER_TAG_KEY, INSTANCE_TAG_KEY} & {tag["Key"] for tag in role.get("Tags", [])}


@pytest.mark.parametrize("path", [DATALAKE, REMOTE], ids=["datalake", "remote"])
def test_every_statement_is_explained_in_the_metadata(path):
    template = _load(path)
    sids = {s["Sid"] for s in _all_statements(template)}
    assert sids == set(template["Metadata"]["StatementNotes"])


def _render(node, values: dict[str, str]):
    """Substitute pseudo parameters so a policy reads as it would in one account."""
    if isinstance(node, dict):
        if set(node) == {"Fn::Sub"}:
            text = node["Fn::Sub"]
            for name, value in values.items():
                text = text.replace("${%s}" % name, value)
            return text
        if set(node) == {"Ref"} and node["Ref"] in values:
            return values[node["Ref"]]
        return {key: _render(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_render(item, values) for item in node]
    return node


@pytest.mark.parametrize("path", [DATALAKE, REMOTE], ids=["datalake", "remote"])
def test_policies_match_the_iam_action_and_resource_catalogue(path):
    # parliament checks each action exists and each resource ARN has a type
    # the action can be authorised against.
    template = _load(path)
    values = {"AWS::Partition": "aws", "AWS::AccountId": "111111111111", "RoleName": "provisioner",
              "PortalInstanceId": "prod1"}
    for conditions in _condition_choices(template):
        document = {
            "Version": "2012-10-17",
            "Statement": _render(_identity_statements(template, conditions), values),
        }
        findings = parliament.analyze_policy_string(json.dumps(document)).findings
        assert [(f.issue, f.detail) for f in findings] == []
