"""The documents of a grant: the runbook's three documents, exactly, for the runbook's own inputs."""
import copy
import json
from pathlib import Path

import pytest

from provisioning.documents import (
    PLAN_KEYS,
    ROLE_INLINE_POLICY_NAME,
    build_plan,
    endpoint_settings,
    key_policy_statement,
    plan_hash,
    role_inline_policy,
    role_trust_policy,
    secret_policy_statement,
    validate_spec,
)
from provisioning.errors import InvalidInput
from provisioning.names import ENGINES, MYSQL_FAMILY
from provisioning.spec import AccountAccess, GrantSpec
from provisioning.statements import merge_statement
from tests.provisioning.policy_compare import normalise

GOLDEN = Path(__file__).parent / "golden"
SECRET = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"
KEY = "arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"
ROLE = "arn:aws:iam::111111111111:role/dms-cross-account-secret-access"


def runbook_spec(**changes) -> GrantSpec:
    values = dict(
        grant_id="42",
        instance_id="testportal",
        datalake=AccountAccess("111111111111", "arn:aws:iam::111111111111:role/portal-provisioner"),
        remote=AccountAccess("222222222222", "arn:aws:iam::222222222222:role/portal-provisioner"),
        region="eu-west-1",
        secret_arn=SECRET,
        kms_key_arn=KEY,
        engine="mysql",
        endpoint_identifier="source-db",
        role_name="dms-cross-account-secret-access",
    )
    values.update(changes)
    return GrantSpec(**values)


def golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def without_sid(policy: dict, sid: str) -> dict:
    """``policy`` with the Sid removed from the one statement carrying ``sid``."""
    policy = copy.deepcopy(policy)
    matching = [s for s in policy["Statement"] if s.get("Sid") == sid]
    assert len(matching) == 1, f"expected exactly one statement with Sid {sid}"
    del matching[0]["Sid"]
    return policy


# --- golden: the runbook's documents -------------------------------------------------


def test_trust_policy_is_the_runbooks_plus_only_the_regional_principal():
    trust = role_trust_policy(runbook_spec())
    services = trust["Statement"][0]["Principal"]["Service"]
    assert "dms.eu-west-1.amazonaws.com" in services
    services.remove("dms.eu-west-1.amazonaws.com")
    assert normalise(trust) == normalise(golden("runbook_role.json")["AssumeRolePolicyDocument"])


def test_inline_policy_is_the_runbooks_with_its_sids_and_name():
    runbook = golden("runbook_role.json")
    assert runbook["RoleName"] == runbook_spec().role_name
    [inline] = runbook["Policies"]
    assert ROLE_INLINE_POLICY_NAME == inline["PolicyName"]
    assert normalise(role_inline_policy(runbook_spec())) == normalise(inline["PolicyDocument"])


def test_secret_policy_is_the_runbooks_modulo_the_portal_sid():
    spec = runbook_spec()
    ours = merge_statement(None, secret_policy_statement(spec))
    runbook = golden("runbook_secret_policy.json")
    assert normalise(without_sid(ours, spec.statement_sid)) == normalise(
        without_sid(runbook, "AllowDataLakeRoleToReadSecret")
    )


def test_key_statement_merged_into_the_root_only_policy_gives_the_runbooks_key_policy():
    spec = runbook_spec()
    runbook = golden("runbook_key_policy.json")
    root_only = copy.deepcopy(runbook)
    root_only["Statement"] = [s for s in root_only["Statement"] if s["Sid"] == "EnableRootPermissions"]
    merged = merge_statement(root_only, key_policy_statement(spec))
    assert [s["Sid"] for s in merged["Statement"]] == ["EnableRootPermissions", spec.statement_sid]
    assert merged["Id"] == "key-policy-source-db-credentials"
    assert normalise(without_sid(merged, spec.statement_sid)) == normalise(
        without_sid(runbook, "AllowDataLakeRoleToDecrypt")
    )


def test_portal_statements_use_the_grant_sid_and_the_exact_role_arn():
    spec = runbook_spec()
    for statement in (secret_policy_statement(spec), key_policy_statement(spec)):
        assert statement["Sid"] == spec.statement_sid
        assert statement["Principal"] == {"AWS": ROLE}
        assert ":root" not in json.dumps(statement)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p["Statement"][1]["Action"].append("kms:Encrypt"),
        lambda p: p["Statement"][1]["Condition"]["StringEquals"].update({"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}),
        lambda p: p["Statement"][1]["Principal"].update({"AWS": "arn:aws:iam::111111111111:root"}),
        lambda p: p["Statement"].pop(0),
        lambda p: p.update({"Id": "other"}),
    ],
)
def test_the_golden_comparison_notices_a_real_difference(mutate):
    runbook = golden("runbook_key_policy.json")
    changed = copy.deepcopy(runbook)
    mutate(changed)
    assert normalise(changed) != normalise(runbook)


def test_normaliser_equivalences_are_only_the_intended_ones():
    assert normalise({"Action": "a:b"}) == normalise({"Action": ["a:b"]})
    assert normalise({"Action": ["a:b", "a:c"]}) == normalise({"Action": ["a:c", "a:b"]})
    assert normalise({"Effect": "Allow"}) != normalise({"Effect": ["Allow"]})
    assert normalise({"Condition": {"StringEquals": {"k:x": "v"}}}) == normalise(
        {"Condition": {"StringEquals": {"k:x": ["v"]}}}
    )


# --- regional and partition variants --------------------------------------------------


def test_documents_follow_the_region_and_account():
    spec = runbook_spec(
        region="us-east-2",
        datalake=AccountAccess("333333333333", "arn:aws:iam::333333333333:role/p"),
        secret_arn="arn:aws:secretsmanager:us-east-2:222222222222:secret:db-AbCdEf",
        kms_key_arn="arn:aws:kms:us-east-2:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b",
    )
    trust = role_trust_policy(spec)["Statement"][0]
    assert trust["Principal"]["Service"] == ["dms.amazonaws.com", "dms.us-east-2.amazonaws.com"]
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "333333333333"},
        "ArnLike": {"aws:SourceArn": "arn:aws:dms:us-east-2:333333333333:endpoint:*"},
    }
    assert key_policy_statement(spec)["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.us-east-2.amazonaws.com"}
    }
    assert secret_policy_statement(spec)["Principal"] == {
        "AWS": "arn:aws:iam::333333333333:role/dms-cross-account-secret-access"
    }


def test_china_partition_uses_its_dns_suffix_and_partition():
    spec = runbook_spec(
        partition="aws-cn",
        region="cn-north-1",
        secret_arn="arn:aws-cn:secretsmanager:cn-north-1:222222222222:secret:db-AbCdEf",
        kms_key_arn="arn:aws-cn:kms:cn-north-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b",
    )
    plan = build_plan(spec)
    assert plan["key_policy_statement"]["Condition"]["StringEquals"]["kms:ViaService"] == (
        "secretsmanager.cn-north-1.amazonaws.com.cn"
    )
    assert plan["secret_policy_statement"]["Principal"]["AWS"].startswith("arn:aws-cn:iam::111111111111:role/")


# --- endpoint settings ----------------------------------------------------------------


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_endpoint_settings_carry_only_the_secret_for_every_engine(engine):
    settings = endpoint_settings(runbook_spec(engine=engine))
    key = ENGINES[engine]
    assert settings[key] == {"SecretsManagerAccessRoleArn": ROLE, "SecretsManagerSecretId": SECRET}
    assert settings["EngineName"] == engine
    assert settings["EndpointIdentifier"] == "source-db"
    assert settings["EndpointType"] == "source"
    text = json.dumps(settings)
    for forbidden in ("UserName", "Password", "ServerName", "Port", "Tags"):
        assert forbidden not in text
    assert set(settings) <= {"EndpointIdentifier", "EndpointType", "EngineName", "DatabaseName", key}


@pytest.mark.parametrize("engine", sorted(set(ENGINES) - MYSQL_FAMILY))
def test_database_name_is_passed_where_dms_allows_it(engine):
    assert endpoint_settings(runbook_spec(engine=engine, database_name="orders"))["DatabaseName"] == "orders"


@pytest.mark.parametrize("engine", sorted(MYSQL_FAMILY))
def test_database_name_is_refused_for_the_mysql_family(engine):
    spec = runbook_spec(engine=engine, database_name="orders")
    assert "DatabaseName" not in endpoint_settings(spec)
    with pytest.raises(InvalidInput) as caught:
        build_plan(spec)
    assert caught.value.field == "database_name"


def test_target_endpoint_type_is_passed_through():
    assert endpoint_settings(runbook_spec(engine="redshift", endpoint_type="target"))["EndpointType"] == "target"


# --- the plan -------------------------------------------------------------------------


def test_plan_has_exactly_the_contract_keys_and_is_json():
    plan = build_plan(runbook_spec())
    assert tuple(plan) == PLAN_KEYS
    assert json.loads(json.dumps(plan)) == plan


def test_plan_hash_is_stable_and_changes_with_the_plan():
    plan = build_plan(runbook_spec())
    again = json.loads(json.dumps(build_plan(runbook_spec())), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    assert plan_hash(plan) == plan_hash(again)
    assert len(plan_hash(plan)) == 64
    assert plan_hash(plan) != plan_hash(build_plan(runbook_spec(role_name="other-role")))
    assert plan_hash(plan) != plan_hash(build_plan(runbook_spec(grant_id="43")))


def test_plan_requires_a_key():
    with pytest.raises(InvalidInput) as caught:
        build_plan(runbook_spec(kms_key_arn=None))
    assert caught.value.field == "kms_key_arn"


def test_plan_refuses_an_alias_key():
    with pytest.raises(InvalidInput) as caught:
        build_plan(runbook_spec(kms_key_arn="arn:aws:kms:eu-west-1:222222222222:alias/source-db"))
    assert caught.value.field == "kms_key_arn"
    assert "alias" in caught.value.rule


@pytest.mark.parametrize(
    "changes, field, diagnosis",
    [
        ({"secret_arn": SECRET.replace("222222222222", "333333333333")}, "secret_arn", "account_mismatch"),
        ({"secret_arn": SECRET.replace("eu-west-1", "eu-central-1")}, "secret_arn", "region_mismatch"),
        ({"kms_key_arn": KEY.replace("222222222222", "333333333333")}, "kms_key_arn", "account_mismatch"),
        ({"kms_key_arn": KEY.replace("eu-west-1", "eu-central-1")}, "kms_key_arn", "region_mismatch"),
        ({"replication_instance_arn": "arn:aws:dms:eu-west-1:222222222222:rep:x"}, "replication_instance_arn", "account_mismatch"),
        ({"replication_instance_arn": "arn:aws:dms:us-east-1:111111111111:rep:x"}, "replication_instance_arn", "region_mismatch"),
        ({"engine": "MySQL"}, "engine", "invalid_input"),
        ({"endpoint_identifier": "bad--id"}, "endpoint_identifier", "invalid_input"),
        ({"role_name": "r" * 65}, "role_name", "invalid_input"),
        ({"region": "eu-west"}, "region", "invalid_input"),
        ({"datalake": AccountAccess("11111111111", "x")}, "datalake_account_id", "invalid_input"),
    ],
)
def test_plan_refuses_inconsistent_inputs(changes, field, diagnosis):
    with pytest.raises(InvalidInput) as caught:
        build_plan(runbook_spec(**changes))
    assert caught.value.field == field
    assert caught.value.diagnosis == diagnosis


def test_validate_spec_accepts_a_spec_without_key_and_a_matching_instance():
    validate_spec(runbook_spec(kms_key_arn=None, replication_instance_arn="arn:aws:dms:eu-west-1:111111111111:rep:x"))
