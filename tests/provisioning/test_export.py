"""Exporting a grant's change: CloudFormation, the Remote documents and the AWS CLI commands."""
import shlex

import botocore.session
import pytest
import yaml
from botocore import xform_name
from cfnlint.api import lint

from provisioning.documents import build_plan, key_policy_statement, secret_policy_statement
from provisioning.errors import InvalidInput
from provisioning.export import (
    INLINE_POLICY_FILE,
    KEY_POLICY_FILE,
    SECRET_POLICY_FILE,
    TRUST_POLICY_FILE,
    cli_commands,
    cli_files,
    cloudformation_template,
    default_key_policy,
    remote_documents,
)
from provisioning.spec import INSTANCE_TAG_KEY, OWNER_TAG_KEY
from provisioning.statements import find_statement
from tests.provisioning.test_documents import KEY, SECRET, golden, runbook_spec

FOREIGN = {
    "Sid": "TeamReads",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::333333333333:role/reporting"},
    "Action": "secretsmanager:GetSecretValue",
    "Resource": "*",
}


def _role(template_text: str) -> dict:
    template = yaml.safe_load(template_text)
    (resource,) = template["Resources"].values()
    assert resource["Type"] == "AWS::IAM::Role"
    return resource["Properties"]


def test_template_passes_cfn_lint():
    matches = lint(cloudformation_template(runbook_spec()), regions=["eu-west-1", "us-east-1"])
    assert [str(m) for m in matches] == []


def test_china_partition_template_passes_cfn_lint():
    spec = runbook_spec(
        partition="aws-cn",
        region="cn-north-1",
        secret_arn=SECRET.replace("arn:aws:", "arn:aws-cn:").replace("eu-west-1", "cn-north-1"),
        kms_key_arn=KEY.replace("arn:aws:", "arn:aws-cn:").replace("eu-west-1", "cn-north-1"),
    )
    text = cloudformation_template(spec)
    assert "dms.cn-north-1.amazonaws.com.cn" in text
    assert [str(m) for m in lint(text, regions=["cn-north-1"])] == []


def test_template_role_documents_equal_the_plan():
    spec = runbook_spec()
    plan = build_plan(spec)
    role = _role(cloudformation_template(spec))
    assert role["RoleName"] == "dms-cross-account-secret-access"
    assert role["AssumeRolePolicyDocument"] == plan["role_trust_policy"]
    assert role["Policies"] == [{"PolicyName": "ReadRemoteSecret", "PolicyDocument": plan["role_inline_policy"]}]
    assert role["Tags"] == [{"Key": INSTANCE_TAG_KEY, "Value": "testportal"}, {"Key": OWNER_TAG_KEY, "Value": "42"}]


def test_template_inline_policy_is_the_runbooks():
    role = _role(cloudformation_template(runbook_spec()))
    runbook = golden("runbook_role.json")
    assert role["Policies"][0]["PolicyDocument"] == runbook["Policies"][0]["PolicyDocument"]


def test_remote_documents_without_current_policies_are_the_runbooks_shape():
    spec = runbook_spec()
    documents = remote_documents(spec)
    assert documents["secret_policy"] == {"Version": "2012-10-17", "Statement": [secret_policy_statement(spec)]}
    assert documents["key_policy"]["Statement"] == [
        default_key_policy(spec)["Statement"][0],
        key_policy_statement(spec),
    ]
    assert documents["key_policy"]["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::222222222222:root"}


def test_remote_documents_keep_foreign_statements_of_the_current_policies():
    spec = runbook_spec()
    current_key = {"Version": "2012-10-17", "Id": "custom", "Statement": [dict(FOREIGN, Sid="KeyAdmins")]}
    documents = remote_documents(
        spec,
        current_secret_policy={"Version": "2012-10-17", "Statement": [FOREIGN]},
        current_key_policy=current_key,
    )
    assert documents["secret_policy"]["Statement"] == [FOREIGN, secret_policy_statement(spec)]
    assert documents["key_policy"]["Id"] == "custom"
    assert documents["key_policy"]["Statement"] == [current_key["Statement"][0], key_policy_statement(spec)]


def test_cli_files_hold_the_plans_documents():
    spec = runbook_spec(engine="postgres", database_name="sales")
    plan = build_plan(spec)
    files = cli_files(spec)
    assert files[TRUST_POLICY_FILE] == plan["role_trust_policy"]
    assert files[INLINE_POLICY_FILE] == plan["role_inline_policy"]
    assert find_statement(files[SECRET_POLICY_FILE], spec.statement_sid) == plan["secret_policy_statement"]
    assert find_statement(files[KEY_POLICY_FILE], spec.statement_sid) == plan["key_policy_statement"]
    assert files["postgre-sql-settings.json"] == plan["endpoint_settings"]["PostgreSQLSettings"]


def _commands(text: str) -> list[list[str]]:
    joined = text.replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.startswith("aws ")]


@pytest.mark.parametrize("engine", ["mysql", "postgres", "sqlserver", "db2", "mongodb"])
def test_cli_commands_use_real_operations_and_options(engine):
    """Every command names a real operation and only options the AWS CLI derives from its input."""
    session = botocore.session.get_session()
    commands = _commands(cli_commands(runbook_spec(engine=engine)))
    assert [c[1:3] for c in commands] == [
        ["iam", "create-role"],
        ["iam", "put-role-policy"],
        ["secretsmanager", "put-resource-policy"],
        ["kms", "put-key-policy"],
        ["dms", "create-endpoint"],
    ]
    for command in commands:
        model = session.get_service_model(command[1])
        operations = {xform_name(name, "-"): name for name in model.operation_names}
        shape = model.operation_model(operations[command[2]]).input_shape
        allowed = {xform_name(member, "-") for member in shape.members} | {"region"}
        options = {arg[2:] for arg in command[3:] if arg.startswith("--")}
        assert options <= allowed, (command[2], options - allowed)
        assert "region" in options
        required = {xform_name(member, "-") for member in shape.required_members}
        assert required <= options, (command[2], required - options)


def test_cli_commands_carry_the_runbooks_settings():
    spec = runbook_spec()
    text = cli_commands(spec)
    commands = {c[2]: c for c in _commands(text)}
    assert "--block-public-policy" in commands["put-resource-policy"]
    key_command = commands["put-key-policy"]
    assert key_command[key_command.index("--policy-name") + 1] == "default"
    assert key_command[key_command.index("--key-id") + 1] == KEY
    secret_command = commands["put-resource-policy"]
    assert secret_command[secret_command.index("--secret-id") + 1] == SECRET
    endpoint = commands["create-endpoint"]
    assert endpoint[endpoint.index("--my-sql-settings") + 1] == "file://my-sql-settings.json"
    assert "--database-name" not in endpoint  # DMS refuses DatabaseName for MySQL
    files = {arg[len("file://"):] for c in commands.values() for arg in c if arg.startswith("file://")}
    assert files == set(cli_files(spec))


def test_export_refuses_a_spec_without_a_key():
    with pytest.raises(InvalidInput):
        cloudformation_template(runbook_spec(kms_key_arn=None))
