"""Drift of an active grant: each kind caused directly in moto, detected, and repaired.

Repair is re-running the idempotent grant steps; afterwards the check must
report nothing and every foreign statement must still be there.
"""
from __future__ import annotations

import copy
import json

import pytest
from moto.dms.models import dms_backends

from provisioning.documents import ROLE_INLINE_POLICY_NAME, role_inline_policy, role_trust_policy
from provisioning.drift import (
    DRIFT_KINDS,
    ENDPOINT_MISSING,
    ENDPOINT_SETTINGS_CHANGED,
    KEY_STATEMENT_CHANGED,
    KEY_STATEMENT_MISSING,
    ROLE_INLINE_POLICY_CHANGED,
    ROLE_MISSING,
    ROLE_RECREATED,
    ROLE_TRUST_POLICY_CHANGED,
    SECRET_STATEMENT_CHANGED,
    SECRET_STATEMENT_MISSING,
    DriftFinding,
    check_drift,
    finding_account,
)
from provisioning.errors import PermanentAwsError
from provisioning.ownership import owner_tags
from provisioning.steps import GRANT_STEPS
from tests.provisioning.botocore_hooks import inject_error, inject_response
from tests.provisioning.conftest import (
    DATALAKE_ID,
    ENDPOINT_ID,
    FOREIGN_KEY_STATEMENT,
    FOREIGN_SECRET_STATEMENT,
    REGION,
    REMOTE_ID,
    ROLE_NAME,
    run_steps,
)

# What a statement of a deleted role looks like in a real policy.
STALE_ROLE_ID = "AROA3XFRBF23EXAMPLE1"


def _emulate_modify_endpoint(dms_client):
    """moto has no ModifyEndpoint: apply the call to moto's own DMS state."""

    def answer(params):
        body = json.loads(params["body"])
        backend = dms_backends[DATALAKE_ID][REGION]
        (endpoint,) = [e for e in backend.endpoints.values() if e.endpoint_arn == body["EndpointArn"]]
        for key, value in body.items():
            if key != "EndpointArn":
                setattr(endpoint, {"MySQLSettings": "my_sql_settings"}.get(key, key), value)
        return 200, {"Endpoint": endpoint.to_dict()}

    inject_response(dms_client, "ModifyEndpoint", answer)


@pytest.fixture
def granted(world, spec, clients):
    """The runbook's grant, fully applied next to foreign statements; returns the recorded role id."""
    world.seed_foreign_statements()
    results = run_steps(GRANT_STEPS, spec, clients)
    return results[0].outputs["role_id"]


def _put_secret_policy(world, policy):
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn, ResourcePolicy=json.dumps(policy))


def _put_key_policy(world, policy):
    world.admin(REMOTE_ID, "kms").put_key_policy(KeyId=world.key_arn, PolicyName="default", Policy=json.dumps(policy))


def _edit_statement(policy, sid, **changes):
    policy = copy.deepcopy(policy)
    for statement in policy["Statement"]:
        if statement.get("Sid") == sid:
            statement.update(changes)
    return policy


def _without_statement(policy, sid):
    policy = copy.deepcopy(policy)
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != sid]
    return policy


def _delete_role(world):
    iam = world.admin(DATALAKE_ID, "iam")
    iam.delete_role_policy(RoleName=ROLE_NAME, PolicyName=ROLE_INLINE_POLICY_NAME)
    iam.delete_role(RoleName=ROLE_NAME)


def _endpoint_arn(world):
    (endpoint,) = world.admin(DATALAKE_ID, "dms").describe_endpoints(
        Filters=[{"Name": "endpoint-id", "Values": [ENDPOINT_ID]}])["Endpoints"]
    return endpoint["EndpointArn"]


def cause_role_missing(world, spec):
    _delete_role(world)


def cause_trust_policy_changed(world, spec):
    loose = role_trust_policy(spec)
    del loose["Statement"][0]["Condition"]
    world.admin(DATALAKE_ID, "iam").update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(loose))


def cause_inline_policy_changed(world, spec):
    wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}
    world.admin(DATALAKE_ID, "iam").put_role_policy(
        RoleName=ROLE_NAME, PolicyName=ROLE_INLINE_POLICY_NAME, PolicyDocument=json.dumps(wide))


def cause_stale_principal(world, spec):
    # In AWS a deleted role's ARN turns into its AROA id in every policy; moto
    # keeps ARNs as given, so the policies are written the way AWS shows them.
    stale = {"AWS": STALE_ROLE_ID}
    _put_secret_policy(world, _edit_statement(world.secret_policy(), spec.statement_sid, Principal=stale))
    _put_key_policy(world, _edit_statement(world.key_policy(), spec.statement_sid, Principal=stale))


def cause_secret_statement_missing(world, spec):
    _put_secret_policy(world, _without_statement(world.secret_policy(), spec.statement_sid))


def cause_secret_statement_changed(world, spec):
    root = {"AWS": f"arn:aws:iam::{DATALAKE_ID}:root"}
    _put_secret_policy(world, _edit_statement(world.secret_policy(), spec.statement_sid, Principal=root))


def cause_key_statement_missing(world, spec):
    _put_key_policy(world, _without_statement(world.key_policy(), spec.statement_sid))


def cause_key_statement_changed(world, spec):
    _put_key_policy(world, _edit_statement(world.key_policy(), spec.statement_sid, Condition={}))


def cause_endpoint_missing(world, spec):
    world.admin(DATALAKE_ID, "dms").delete_endpoint(EndpointArn=_endpoint_arn(world))


def cause_endpoint_points_elsewhere(world, spec):
    # moto has no ModifyEndpoint; its DMS state is edited directly.
    backend = dms_backends[DATALAKE_ID][REGION]
    backend.endpoints[ENDPOINT_ID].my_sql_settings = {
        "SecretsManagerAccessRoleArn": spec.role_arn,
        "SecretsManagerSecretId": world.managed_secret_arn,
    }


CASES = [
    (cause_role_missing, {ROLE_MISSING}),
    (cause_trust_policy_changed, {ROLE_TRUST_POLICY_CHANGED}),
    (cause_inline_policy_changed, {ROLE_INLINE_POLICY_CHANGED}),
    (cause_stale_principal, {ROLE_RECREATED}),
    (cause_secret_statement_missing, {SECRET_STATEMENT_MISSING}),
    (cause_secret_statement_changed, {SECRET_STATEMENT_CHANGED}),
    (cause_key_statement_missing, {KEY_STATEMENT_MISSING}),
    (cause_key_statement_changed, {KEY_STATEMENT_CHANGED}),
    (cause_endpoint_missing, {ENDPOINT_MISSING}),
    (cause_endpoint_points_elsewhere, {ENDPOINT_SETTINGS_CHANGED}),
]


def test_every_kind_of_drift_has_a_case():
    assert set().union(*(expected for _, expected in CASES)) == set(DRIFT_KINDS)


def test_a_fresh_grant_has_no_drift(world, spec, clients, granted):
    report = check_drift(spec, clients=clients, expected_role_id=granted)
    assert report.findings == []
    assert report.role_id == granted
    assert report.to_dict()["drifted"] is False


def test_each_kind_of_drift_is_detected_and_repaired(world, spec, clients, granted, subtests):
    """One grant, drifted and repaired once per kind (a moto world per kind would be slow)."""
    _emulate_modify_endpoint(clients.datalake("dms"))
    role_id = granted
    for cause, kinds in CASES:
        with subtests.test(cause.__name__.removeprefix("cause_")):
            cause(world, spec)

            report = check_drift(spec, clients=clients, expected_role_id=role_id)
            assert set(report.kinds) == kinds
            assert report.to_dict()["drifted"] is True
            json.dumps(report.to_dict())  # stored as JSON on the request

            results = run_steps(GRANT_STEPS, spec, clients)
            role_id = results[0].outputs["role_id"]

            assert check_drift(spec, clients=clients, expected_role_id=role_id).findings == []
            assert FOREIGN_SECRET_STATEMENT in world.secret_policy()["Statement"]
            assert FOREIGN_KEY_STATEMENT in world.key_policy()["Statement"]


def test_a_role_created_again_under_the_same_name_is_detected_by_its_id(world, spec, clients, granted):
    _delete_role(world)
    # Someone restores the role from their own copy of the template.
    iam = world.admin(DATALAKE_ID, "iam")
    iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(role_trust_policy(spec)),
                    Tags=owner_tags(spec))
    iam.put_role_policy(RoleName=ROLE_NAME, PolicyName=ROLE_INLINE_POLICY_NAME,
                        PolicyDocument=json.dumps(role_inline_policy(spec)))

    report = check_drift(spec, clients=clients, expected_role_id=granted)
    assert report.kinds == [ROLE_RECREATED]
    (finding,) = report.findings
    assert (finding.expected, finding.actual) == (granted, report.role_id)

    results = run_steps(GRANT_STEPS, spec, clients)
    assert check_drift(spec, clients=clients, expected_role_id=results[0].outputs["role_id"]).findings == []


def test_several_kinds_at_once_are_all_reported(world, spec, clients, granted):
    cause_endpoint_missing(world, spec)
    cause_key_statement_missing(world, spec)
    cause_trust_policy_changed(world, spec)
    report = check_drift(spec, clients=clients, expected_role_id=granted)
    assert report.kinds == [ROLE_TRUST_POLICY_CHANGED, KEY_STATEMENT_MISSING, ENDPOINT_MISSING]


def test_the_check_only_reads(world, calls, spec, clients, granted):
    cause_secret_statement_changed(world, spec)
    with calls.phase("check"):
        check_drift(spec, clients=clients, expected_role_id=granted)
    assert calls.writes("check") == {}
    assert calls.total("check") > 0


def test_a_check_that_cannot_read_raises_instead_of_reporting_clean(world, spec, clients, granted):
    inject_error(clients.remote("kms"), "GetKeyPolicy", "AccessDeniedException", "not allowed: kms:GetKeyPolicy")
    with pytest.raises(PermanentAwsError) as caught:
        check_drift(spec, clients=clients, expected_role_id=granted)
    assert caught.value.diagnosis == "provisioner_access_denied"


@pytest.mark.parametrize(
    ("kind", "resource", "account"),
    [
        ("role_missing", "arn:aws:iam::111111111111:role/r", "datalake"),
        ("role_trust_policy_changed", "arn:aws:iam::111111111111:role/r", "datalake"),
        ("role_inline_policy_changed", "arn:aws:iam::111111111111:role/r", "datalake"),
        ("endpoint_missing", "source-db", "datalake"),
        ("endpoint_settings_changed", "arn:aws:dms:eu-west-1:111111111111:endpoint:X", "datalake"),
        ("role_recreated", "arn:aws:iam::111111111111:role/r", "datalake"),
        # A Remote statement naming the deleted role's old id: the Remote policy must be written.
        ("role_recreated", "arn:aws:secretsmanager:eu-west-1:222222222222:secret:s", "remote"),
        ("role_recreated", "arn:aws:kms:eu-west-1:222222222222:key/k", "remote"),
        ("secret_statement_missing", "arn:aws:secretsmanager:eu-west-1:222222222222:secret:s", "remote"),
        ("secret_statement_changed", "arn:aws:secretsmanager:eu-west-1:222222222222:secret:s", "remote"),
        ("key_statement_missing", "arn:aws:kms:eu-west-1:222222222222:key/k", "remote"),
        ("key_statement_changed", "arn:aws:kms:eu-west-1:222222222222:key/k", "remote"),
        ("a_kind_not_known_yet", "arn:aws:iam::111111111111:role/r", "remote"),
    ],
)
def test_each_finding_names_the_account_it_is_in(kind, resource, account):
    assert finding_account(kind, resource) == account
    assert DriftFinding(kind, resource, "m").to_dict()["account"] == account
