"""The access evaluator: the runbook's documents allow; each of its failure modes is named."""
import copy
import json
from pathlib import Path

import pytest

from provisioning.errors import InvalidInput
from provisioning.evaluator import evaluate_access

GOLDEN = Path(__file__).parent / "golden"
ROLE = "arn:aws:iam::111111111111:role/dms-cross-account-secret-access"
SECRET = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"
KEY = "arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"


def golden(name):
    return json.loads((GOLDEN / name).read_text())


@pytest.fixture
def docs():
    """The runbook's three documents, ready to be broken one way at a time."""
    return {
        "role_policies": [golden("runbook_role.json")["Policies"][0]["PolicyDocument"]],
        "secret_policy": golden("runbook_secret_policy.json"),
        "key_policy": golden("runbook_key_policy.json"),
    }


def evaluate(docs, *, role_arn=ROLE, region="eu-west-1", secret_arn=SECRET, key_arn=KEY):
    return evaluate_access(role_arn=role_arn, secret_arn=secret_arn, key_arn=key_arn, region=region, **docs)


def statement(policy, sid):
    [found] = [s for s in policy["Statement"] if s.get("Sid") == sid]
    return found


DENY_ALL_SECRETS = {"Sid": "NoSecrets", "Effect": "Deny", "Principal": "*", "Action": "secretsmanager:*", "Resource": "*"}


# --- the happy path -----------------------------------------------------------------------


def test_runbook_documents_allow_access(docs):
    decision = evaluate(docs)
    assert decision.allowed is True
    assert decision.diagnosis is None
    text = " ".join(decision.reasons)
    assert "'GetRemoteSecret'" in text and "'AllowDataLakeRoleToReadSecret'" in text
    assert "'DecryptWithRemoteKmsKey'" in text and "'AllowDataLakeRoleToDecrypt'" in text
    assert json.loads(json.dumps(decision.to_dict()))["allowed"] is True


def test_portal_built_documents_allow_access():
    from provisioning.documents import build_plan
    from provisioning.spec import AccountAccess, GrantSpec
    from provisioning.statements import merge_statement

    spec = GrantSpec(
        grant_id="42", instance_id="testportal", datalake=AccountAccess("111111111111", "arn:aws:iam::111111111111:role/p"),
        remote=AccountAccess("222222222222", "arn:aws:iam::222222222222:role/p"), region="eu-west-1",
        secret_arn=SECRET, kms_key_arn=KEY, engine="postgres", endpoint_identifier="src",
        role_name="dms-secret-src",
    )
    plan = build_plan(spec)
    root_only = {"Version": "2012-10-17", "Statement": [golden("runbook_key_policy.json")["Statement"][0]]}
    decision = evaluate_access(
        role_arn=spec.role_arn, role_policies=[plan["role_inline_policy"]], secret_arn=SECRET,
        secret_policy=merge_statement(None, plan["secret_policy_statement"]), key_arn=KEY,
        key_policy=merge_statement(root_only, plan["key_policy_statement"]), region="eu-west-1",
    )
    assert decision.allowed, decision.reasons


# --- runbook failure mode: AccessDenied on Secrets Manager only ---------------------------


def test_secret_policy_missing(docs):
    docs["secret_policy"] = None
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "secret_policy_denies")
    assert any("no resource policy" in r for r in decision.reasons)


def test_secret_policy_without_statements(docs):
    docs["secret_policy"] = {"Version": "2012-10-17", "Statement": []}
    assert evaluate(docs).diagnosis == "secret_policy_denies"


def test_secret_policy_naming_another_principal(docs):
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Principal"]["AWS"] = (
        "arn:aws:iam::111111111111:role/some-other-role"
    )
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "secret_policy_denies")


def test_secret_policy_principal_case_differs(docs):
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Principal"]["AWS"] = (
        "arn:aws:iam::111111111111:role/DMS-Cross-Account-Secret-Access"
    )
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "secret_policy_denies")
    assert any("letter case" in r for r in decision.reasons)


def test_secret_policy_principal_with_trailing_whitespace(docs):
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Principal"]["AWS"] = ROLE + " "
    decision = evaluate(docs)
    assert decision.diagnosis == "secret_policy_denies"
    assert any("whitespace" in r for r in decision.reasons)


def test_secret_policy_naming_a_recreated_roles_old_id(docs):
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Principal"]["AWS"] = "AROAEXAMPLEID12345678"
    decision = evaluate(docs)
    assert decision.diagnosis == "secret_policy_denies"
    assert any("re-created" in r for r in decision.reasons)


def test_secret_policy_for_another_secret(docs):
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Resource"] = SECRET.replace("aB3xYz", "zzzzzz")
    assert evaluate(docs).diagnosis == "secret_policy_denies"


# --- runbook failure mode: AccessDenied on KMS Decrypt ------------------------------------


def test_key_policy_missing_the_role(docs):
    docs["key_policy"]["Statement"] = [statement(docs["key_policy"], "EnableRootPermissions")]
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "key_policy_denies")


def test_key_policy_absent(docs):
    docs["key_policy"] = None
    assert evaluate(docs).diagnosis == "key_policy_denies"


def test_key_policy_via_service_in_another_region(docs):
    condition = statement(docs["key_policy"], "AllowDataLakeRoleToDecrypt")["Condition"]["StringEquals"]
    condition["kms:ViaService"] = "secretsmanager.us-east-1.amazonaws.com"
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "key_policy_denies")


def test_key_policy_via_another_service(docs):
    condition = statement(docs["key_policy"], "AllowDataLakeRoleToDecrypt")["Condition"]["StringEquals"]
    condition["kms:ViaService"] = "s3.eu-west-1.amazonaws.com"
    assert evaluate(docs).diagnosis == "key_policy_denies"


def test_evaluating_for_another_region_fails_the_via_service_condition(docs):
    other_secret = SECRET.replace("eu-west-1", "us-east-1")
    docs["role_policies"][0]["Statement"][0]["Resource"] = other_secret
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Resource"] = other_secret
    decision = evaluate(docs, region="us-east-1", secret_arn=other_secret)
    assert decision.diagnosis == "key_policy_denies"


# --- identity policy missing a statement ---------------------------------------------------


def test_identity_policy_missing_the_secret_statement(docs):
    policy = docs["role_policies"][0]
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != "GetRemoteSecret"]
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "identity_policy_denies")
    assert any("secretsmanager:GetSecretValue: no statement of the role" in r for r in decision.reasons)


def test_identity_policy_missing_the_key_statement(docs):
    policy = docs["role_policies"][0]
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != "DecryptWithRemoteKmsKey"]
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "identity_policy_denies")
    assert any("kms:Decrypt: no statement of the role" in r for r in decision.reasons)


def test_role_without_any_policy(docs):
    docs["role_policies"] = []
    assert evaluate(docs).diagnosis == "identity_policy_denies"


def test_statements_split_across_several_role_policies_still_allow(docs):
    first, second = docs["role_policies"][0]["Statement"]
    docs["role_policies"] = [{"Version": "2012-10-17", "Statement": first}, {"Version": "2012-10-17", "Statement": [second]}]
    assert evaluate(docs).allowed


# --- explicit Deny in each document -------------------------------------------------------


def test_explicit_deny_in_the_identity_policy(docs):
    docs["role_policies"].append({"Statement": [{"Effect": "Deny", "Action": "kms:*", "Resource": "*"}]})
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "identity_policy_denies")
    assert any("explicitly denied" in r for r in decision.reasons)


def test_explicit_deny_in_the_secret_policy(docs):
    docs["secret_policy"]["Statement"].append(DENY_ALL_SECRETS)
    decision = evaluate(docs)
    assert (decision.allowed, decision.diagnosis) == (False, "secret_policy_denies")
    assert any("'NoSecrets'" in r for r in decision.reasons)


def test_explicit_deny_in_the_key_policy(docs):
    docs["key_policy"]["Statement"].append(
        {"Sid": "NoDecrypt", "Effect": "Deny", "Principal": {"AWS": "111111111111"}, "Action": "kms:Decrypt", "Resource": "*"}
    )
    assert evaluate(docs).diagnosis == "key_policy_denies"


def test_deny_with_not_principal_spares_only_the_named_principal(docs):
    deny_others = {"Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "secretsmanager:*", "Resource": "*"}
    docs["secret_policy"]["Statement"].append(deny_others)
    assert evaluate(docs).allowed
    deny_others["NotPrincipal"] = {"AWS": "arn:aws:iam::111111111111:role/other"}
    assert evaluate(docs).diagnosis == "secret_policy_denies"


def test_deny_that_does_not_match_leaves_access(docs):
    docs["secret_policy"]["Statement"].append(
        {"Effect": "Deny", "Principal": "*", "Action": "secretsmanager:DeleteSecret", "Resource": "*"}
    )
    docs["key_policy"]["Statement"].append(
        {"Effect": "Deny", "Principal": "*", "NotAction": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}
    )
    docs["role_policies"].append({"Statement": {"Effect": "Deny", "Action": "kms:*", "NotResource": KEY}})
    assert evaluate(docs).allowed


def test_several_failures_are_all_reported(docs):
    docs["secret_policy"] = None
    docs["key_policy"]["Statement"] = docs["key_policy"]["Statement"][:1]
    decision = evaluate(docs)
    assert decision.diagnosis == "secret_policy_denies"
    assert any("key policy has no statement allowing" in r for r in decision.reasons)


# --- principals, actions, resources --------------------------------------------------------


@pytest.mark.parametrize(
    "principal, allowed",
    [
        ({"AWS": ROLE}, True),
        ({"AWS": [ROLE, "arn:aws:iam::333333333333:root"]}, True),
        ({"AWS": "arn:aws:iam::111111111111:root"}, True),
        ({"AWS": "111111111111"}, True),
        ({"AWS": "*"}, True),
        ("*", True),
        ({"AWS": "arn:aws:iam::333333333333:root"}, False),
        ({"AWS": "333333333333"}, False),
        ({"AWS": "arn:aws-cn:iam::111111111111:root"}, False),
        ({"Service": "dms.amazonaws.com"}, False),
        ({"Service": ROLE}, False),
        ({"AWS": "arn:aws:sts::111111111111:assumed-role/dms-cross-account-secret-access/x"}, False),
        ({"AWS": "arn:aws:iam::111111111111:role/dms-*"}, False),
    ],
)
def test_secret_policy_principal_forms(docs, principal, allowed):
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Principal"] = principal
    decision = evaluate(docs)
    assert decision.allowed is allowed
    assert decision.diagnosis == (None if allowed else "secret_policy_denies")


@pytest.mark.parametrize(
    "actions, allowed",
    [
        ("secretsmanager:GetSecretValue", True),
        ("SecretsManager:getsecretvalue", True),
        ("secretsmanager:Get*", True),
        ("secretsmanager:*", True),
        ("*", True),
        ("secretsmanager:GetSecretValu?", True),
        ("secretsmanager:DescribeSecret", False),
        ("secretsmanager:GetSecret", False),
        ("kms:GetSecretValue", False),
    ],
)
def test_identity_policy_action_wildcards(docs, actions, allowed):
    docs["role_policies"][0]["Statement"][0]["Action"] = actions
    assert evaluate(docs).allowed is allowed


def test_not_action_allow(docs):
    first = docs["role_policies"][0]["Statement"][0]
    del first["Action"]
    first["NotAction"] = "secretsmanager:PutSecretValue"
    assert evaluate(docs).allowed
    first["NotAction"] = ["secretsmanager:Get*"]
    assert evaluate(docs).diagnosis == "identity_policy_denies"


@pytest.mark.parametrize(
    "resource, allowed",
    [
        (SECRET, True),
        ("arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-*", True),
        ("arn:aws:secretsmanager:*:222222222222:secret:*", True),
        ("arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-??????", True),
        ("*", True),
        ("arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials", False),
        (SECRET.upper(), False),
        ("arn:aws:secretsmanager:eu-west-1:333333333333:secret:*", False),
    ],
)
def test_identity_policy_resource_wildcards(docs, resource, allowed):
    docs["role_policies"][0]["Statement"][0]["Resource"] = resource
    assert evaluate(docs).allowed is allowed


def test_not_resource(docs):
    second = docs["role_policies"][0]["Statement"][1]
    del second["Resource"]
    second["NotResource"] = "arn:aws:kms:*:*:key/other"
    assert evaluate(docs).allowed
    second["NotResource"] = ["arn:aws:kms:eu-west-1:222222222222:key/*"]
    assert evaluate(docs).diagnosis == "identity_policy_denies"


def test_identity_statement_without_resource_grants_nothing(docs):
    del docs["role_policies"][0]["Statement"][0]["Resource"]
    assert evaluate(docs).diagnosis == "identity_policy_denies"


# --- conditions -----------------------------------------------------------------------------


def set_key_condition(docs, condition):
    statement(docs["key_policy"], "AllowDataLakeRoleToDecrypt")["Condition"] = condition


@pytest.mark.parametrize(
    "condition, allowed",
    [
        ({"StringEquals": {"kms:ViaService": ["s3.eu-west-1.amazonaws.com", "secretsmanager.eu-west-1.amazonaws.com"]}}, True),
        ({"StringEquals": {"KMS:viaservice": "secretsmanager.eu-west-1.amazonaws.com"}}, True),
        ({"StringEquals": {"kms:ViaService": "SecretsManager.eu-west-1.amazonaws.com"}}, False),
        ({"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}}, True),
        ({"StringLike": {"kms:ViaService": "s3.*"}}, False),
        ({"StringNotEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}, True),
        ({"StringNotEquals": {"kms:ViaService": ["s3.eu-west-1.amazonaws.com", "secretsmanager.eu-west-1.amazonaws.com"]}}, False),
        ({"StringEquals": {"kms:CallerAccount": "111111111111"}}, True),
        ({"StringEquals": {"kms:CallerAccount": "222222222222"}}, False),
        ({"StringEquals": {"aws:PrincipalAccount": "111111111111"}}, True),
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111111111111:role/dms-*"}}, True),
        ({"ArnEquals": {"aws:PrincipalArn": ROLE}}, True),
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/other"}}, False),
        ({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/other"}}, True),
        ({"StringEqualsIfExists": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}, True),
        # Both operators must hold (AND).
        ({"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com", "kms:CallerAccount": "999999999999"}}, False),
        # Fail closed on an Allow: an unknown key or operator means the Allow does not apply.
        ({"StringEquals": {"kms:EncryptionContext:SecretARN": SECRET}}, False),
        ({"StringEqualsIgnoreCase": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}, False),
        ({"ForAnyValue:StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}, False),
        ({"Bool": {"aws:SecureTransport": "true"}}, False),
    ],
)
def test_key_policy_conditions(docs, condition, allowed):
    set_key_condition(docs, condition)
    decision = evaluate(docs)
    assert decision.allowed is allowed
    assert decision.diagnosis == (None if allowed else "key_policy_denies")


def test_a_condition_on_a_key_absent_from_the_request_fails_unless_negated(docs):
    # GetSecretValue carries no kms:ViaService, so this Allow never applies to it ...
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Condition"] = {
        "StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}
    }
    assert evaluate(docs).diagnosis == "secret_policy_denies"
    # ... while a negated operator on an absent key holds, as in AWS.
    statement(docs["secret_policy"], "AllowDataLakeRoleToReadSecret")["Condition"] = {
        "StringNotEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    }
    assert evaluate(docs).allowed


@pytest.mark.parametrize(
    "condition",
    [
        {"Bool": {"aws:SecureTransport": "false"}},
        {"StringEquals": {"aws:SourceVpce": "vpce-123"}},
        {"ForAllValues:StringLike": {"aws:PrincipalArn": "*"}},
        "not an object",
    ],
)
def test_fail_closed_an_unknown_condition_on_a_deny_makes_it_apply(docs, condition):
    docs["secret_policy"]["Statement"].append({**DENY_ALL_SECRETS, "Condition": condition})
    decision = evaluate(docs)
    assert decision.diagnosis == "secret_policy_denies"
    assert any("not supported" in r or "not understood" in r for r in decision.reasons)


def test_a_deny_whose_known_condition_fails_does_not_apply_even_with_unknown_ones(docs):
    docs["secret_policy"]["Statement"].append(
        {**DENY_ALL_SECRETS, "Condition": {"Bool": {"aws:SecureTransport": "false"},
                                            "StringNotEquals": {"aws:PrincipalAccount": "111111111111"}}}
    )
    assert evaluate(docs).allowed


# --- same-account rules ---------------------------------------------------------------------


def test_same_account_secret_policy_alone_suffices_but_key_needs_the_role_named():
    role = "arn:aws:iam::222222222222:role/local"
    docs = {
        "role_policies": [],
        "secret_policy": {"Statement": [{"Effect": "Allow", "Principal": {"AWS": role}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]},
        "key_policy": {"Statement": [{"Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:Decrypt", "Resource": "*"}]},
    }
    assert evaluate(docs, role_arn=role).allowed
    docs["key_policy"]["Statement"][0]["Principal"] = {"AWS": "arn:aws:iam::222222222222:root"}
    assert evaluate(docs, role_arn=role).diagnosis == "identity_policy_denies"
    docs["role_policies"] = [{"Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY}]}]
    assert evaluate(docs, role_arn=role).allowed


def test_cross_account_key_policy_naming_the_role_still_needs_the_identity_policy(docs):
    docs["role_policies"][0]["Statement"].pop(1)
    assert evaluate(docs).diagnosis == "identity_policy_denies"


# --- inputs -----------------------------------------------------------------------------------


def test_policies_as_json_text_are_understood(docs):
    docs = {k: json.dumps(v) for k, v in docs.items() if k != "role_policies"} | {
        "role_policies": [json.dumps(p) for p in docs["role_policies"]]
    }
    assert evaluate(docs).allowed


def test_bad_inputs_are_refused(docs):
    with pytest.raises(InvalidInput) as caught:
        evaluate(docs, key_arn="arn:aws:kms:eu-west-1:222222222222:alias/source-db")
    assert caught.value.field == "key_arn"
    with pytest.raises(InvalidInput):
        evaluate(docs, role_arn="arn:aws:iam::111111111111:user/x")
    with pytest.raises(InvalidInput):
        evaluate(docs, region="europe")


def test_inputs_are_not_modified(docs):
    before = copy.deepcopy(docs)
    evaluate(docs)
    assert docs == before


def test_a_failed_condition_is_explained_with_the_request_value(docs):
    set_key_condition(docs, {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}})
    reasons = " ".join(evaluate(docs).reasons)
    assert "'AllowDataLakeRoleToDecrypt': its Condition does not hold" in reasons
    assert "kms:ViaService=secretsmanager.eu-west-1.amazonaws.com" in reasons
