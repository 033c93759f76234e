"""Two portal deployments sharing the same accounts, with colliding request ids.

Request #1042 of the portal instance "alpha" and request #1042 of "beta"
(staging, a restored backup) are different grants: neither may rewrite,
repair or delete the other's role, endpoint or statements. Marks made before
instance ids existed are the portal's own only under the instance id
``legacy``, which adopts them.
"""
from __future__ import annotations

import copy
import json

import pytest
from moto.dms.models import dms_backends

from provisioning.clients import GrantClients
from provisioning.drift import ENDPOINT_MISSING, ROLE_MISSING, check_drift
from provisioning.errors import InvalidInput, PermanentAwsError
from provisioning.ownership import (
    INSTANCE_TAG_KEY,
    LEGACY_INSTANCE_ID,
    OWNER_TAG_KEY,
    legacy_statement_sid,
    statement_sid,
    validate_instance_id,
)
from provisioning.preflight import preflight
from provisioning.statements import merge_statement, remove_statement
from provisioning.steps import GRANT_STEPS, REVOKE_STEPS, create_endpoint, create_role
from tests.provisioning.conftest import (
    DATALAKE_ID,
    ENDPOINT_ID,
    FOREIGN_KEY_STATEMENT,
    FOREIGN_SECRET_STATEMENT,
    GRANT_ID,
    REGION,
    REMOTE_ID,
    ROLE_NAME,
    run_steps,
)
from tests.provisioning.botocore_hooks import inject_response


def _dms_tagger():
    return dms_backends[DATALAKE_ID][REGION].tagger


def _emulate_add_tags_to_resource(session) -> None:
    """moto has no AddTagsToResource: apply the call to moto's own DMS tags."""

    def answer(params):
        body = json.loads(params["body"])
        _dms_tagger().tag_resource(body["ResourceArn"], body["Tags"])
        return 200, {}

    inject_response(session, "AddTagsToResource", answer)


def _sids(policy) -> set[str]:
    return {s.get("Sid") for s in (policy or {}).get("Statement", [])}


def _role_tags(world, name=ROLE_NAME) -> dict[str, str]:
    tags = world.admin(DATALAKE_ID, "iam").list_role_tags(RoleName=name)["Tags"]
    return {t["Key"]: t["Value"] for t in tags}


def _endpoint_tags(world, identifier=ENDPOINT_ID) -> dict[str, str]:
    arn = world.endpoint(identifier)["EndpointArn"]
    tags = world.admin(DATALAKE_ID, "dms").list_tags_for_resource(ResourceArn=arn)["TagList"]
    return {t["Key"]: t["Value"] for t in tags}


@pytest.fixture
def portals(world, factory):
    """The same request id in two deployments, each with its own role and endpoint names."""
    world.seed_foreign_statements()
    alpha = world.spec(instance_id="alpha")
    beta = world.spec(instance_id="beta", role_name="dms-beta-secret-access", endpoint_identifier="beta-source-db")
    return {
        "alpha": (alpha, GrantClients(factory, alpha)),
        "beta": (beta, GrantClients(factory, beta)),
    }


def test_the_sid_names_the_instance_and_never_collides():
    assert statement_sid("alpha", "1042") == "DmsAccessPortalalphaRequest1042"
    assert statement_sid("alpha", "1042") != statement_sid("beta", "1042")
    # Without a mark between them, ("ab1", "2") and ("ab", "12") would give the same Sid.
    assert statement_sid("ab1", "2") != statement_sid("ab", "12")
    assert statement_sid(LEGACY_INSTANCE_ID, "7") != legacy_statement_sid("7") == "DmsAccessPortal7"
    for bad in ("", "Alpha", "al-pha", "al_pha", "a" * 33, "álpha", None):
        with pytest.raises(InvalidInput):
            validate_instance_id(bad)


def test_two_portals_with_the_same_request_id_grant_side_by_side(world, portals):
    (alpha, alpha_clients), (beta, beta_clients) = portals["alpha"], portals["beta"]
    alpha_role = run_steps(GRANT_STEPS, alpha, alpha_clients)[0].outputs["role_id"]
    beta_role = run_steps(GRANT_STEPS, beta, beta_clients)[0].outputs["role_id"]

    assert _role_tags(world) == {INSTANCE_TAG_KEY: "alpha", OWNER_TAG_KEY: GRANT_ID}
    assert _role_tags(world, beta.role_name) == {INSTANCE_TAG_KEY: "beta", OWNER_TAG_KEY: GRANT_ID}
    assert _endpoint_tags(world, beta.endpoint_identifier) == {INSTANCE_TAG_KEY: "beta", OWNER_TAG_KEY: GRANT_ID}
    both = {alpha.statement_sid, beta.statement_sid}
    assert both <= _sids(world.secret_policy()) and both <= _sids(world.key_policy())
    assert check_drift(alpha, clients=alpha_clients, expected_role_id=alpha_role).findings == []
    assert check_drift(beta, clients=beta_clients, expected_role_id=beta_role).findings == []

    # alpha repairs its grant after its statement was edited: beta's stays as it was.
    beta_secret = copy.deepcopy(world.secret_policy())
    edited = copy.deepcopy(beta_secret)
    for statement in edited["Statement"]:
        if statement["Sid"] == alpha.statement_sid:
            statement["Action"] = "secretsmanager:*"
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn, ResourcePolicy=json.dumps(edited))
    assert check_drift(beta, clients=beta_clients, expected_role_id=beta_role).findings == []
    assert check_drift(alpha, clients=alpha_clients, expected_role_id=alpha_role).kinds == ["secret_statement_changed"]
    run_steps(GRANT_STEPS, alpha, alpha_clients)
    assert world.secret_policy() == beta_secret

    # alpha revokes #1042: beta's #1042 is whole and still clean.
    run_steps(REVOKE_STEPS, alpha, alpha_clients)
    assert world.role() is None and world.endpoint() is None
    assert world.role(beta.role_name) is not None and world.endpoint(beta.endpoint_identifier) is not None
    assert alpha.statement_sid not in _sids(world.secret_policy()) | _sids(world.key_policy())
    assert beta.statement_sid in _sids(world.secret_policy()) and beta.statement_sid in _sids(world.key_policy())
    assert FOREIGN_SECRET_STATEMENT in world.secret_policy()["Statement"]
    assert FOREIGN_KEY_STATEMENT in world.key_policy()["Statement"]
    assert check_drift(beta, clients=beta_clients, expected_role_id=beta_role).findings == []


def test_a_portal_never_takes_over_the_role_or_endpoint_another_instance_made_for_the_same_request(
    world, factory, portals
):
    alpha, alpha_clients = portals["alpha"]
    alpha_role = run_steps(GRANT_STEPS, alpha, alpha_clients)[0].outputs["role_id"]
    before = world.state()
    # beta's #1042 happens to use the same role name and endpoint identifier.
    intruder = world.spec(instance_id="beta")
    intruder_clients = GrantClients(factory, intruder)

    report = preflight(intruder, clients=intruder_clients)
    failed = {check.diagnosis for check in report.checks if not check.ok}
    assert not report.ok and failed == {"role_name_taken", "endpoint_identifier_taken"}
    with pytest.raises(PermanentAwsError) as refused:
        create_role(intruder, clients=intruder_clients)
    assert refused.value.diagnosis == "role_name_taken"
    assert "request 1042 of the portal instance alpha" in str(refused.value)
    with pytest.raises(PermanentAwsError) as refused:
        create_endpoint(intruder, clients=intruder_clients)
    assert refused.value.diagnosis == "endpoint_identifier_taken"

    # Its drift check sees its role and endpoint gone, not alpha's as its own.
    drift = check_drift(intruder, clients=intruder_clients)
    assert {ROLE_MISSING, ENDPOINT_MISSING} <= set(drift.kinds)

    # Its revoke leaves alpha's role, endpoint and statements alone.
    results = run_steps(REVOKE_STEPS, intruder, intruder_clients)
    assert not any(r.changed for r in results)
    assert "skipped" in results[0].outputs and "skipped" in results[-1].outputs
    assert world.state() == before
    assert check_drift(alpha, clients=alpha_clients, expected_role_id=alpha_role).findings == []


def _make_legacy(world, spec) -> None:
    """Turn ``spec``'s applied grant into what a portal without instance ids left behind."""
    world.admin(DATALAKE_ID, "iam").untag_role(RoleName=spec.role_name, TagKeys=[INSTANCE_TAG_KEY])
    arn = world.endpoint(spec.endpoint_identifier)["EndpointArn"]
    _dms_tagger().untag_resource_using_names(arn, [INSTANCE_TAG_KEY])  # moto has no RemoveTagsFromResource
    old = legacy_statement_sid(spec.grant_id)
    for policy, put in (
        (world.secret_policy(), lambda p: world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
            SecretId=world.secret_arn, ResourcePolicy=json.dumps(p))),
        (world.key_policy(), lambda p: world.admin(REMOTE_ID, "kms").put_key_policy(
            KeyId=world.key_arn, PolicyName="default", Policy=json.dumps(p))),
    ):
        for statement in policy["Statement"]:
            if statement.get("Sid") == spec.statement_sid:
                statement["Sid"] = old
        put(policy)


@pytest.fixture
def legacy_grant(world, factory):
    """Request #1042 as a portal made it before instance ids: request tag only, Sid DmsAccessPortal1042."""
    world.seed_foreign_statements()
    _emulate_add_tags_to_resource(world.base_session)
    spec = world.spec(instance_id=LEGACY_INSTANCE_ID)
    clients = GrantClients(factory, spec)
    role_id = run_steps(GRANT_STEPS, spec, clients)[0].outputs["role_id"]
    _make_legacy(world, spec)
    assert _role_tags(world) == {OWNER_TAG_KEY: GRANT_ID}
    assert legacy_statement_sid(GRANT_ID) in _sids(world.secret_policy())
    return spec, clients, role_id


def test_legacy_marks_are_not_another_instances_own(world, factory, legacy_grant):
    before = world.state()
    other = world.spec(instance_id="alpha")
    clients = GrantClients(factory, other)
    with pytest.raises(PermanentAwsError) as refused:
        create_role(other, clients=clients)
    assert "of a portal without an instance id" in str(refused.value)
    assert {ROLE_MISSING, ENDPOINT_MISSING} <= set(check_drift(other, clients=clients).kinds)
    assert not any(r.changed for r in run_steps(REVOKE_STEPS, other, clients))
    assert world.state() == before


def test_the_legacy_instance_keeps_its_old_grant_clean_and_adopts_it_on_repair(world, legacy_grant):
    spec, clients, role_id = legacy_grant
    # Straight after the upgrade: nothing has drifted.
    assert check_drift(spec, clients=clients, expected_role_id=role_id).findings == []

    run_steps(GRANT_STEPS, spec, clients)
    assert _role_tags(world) == {INSTANCE_TAG_KEY: LEGACY_INSTANCE_ID, OWNER_TAG_KEY: GRANT_ID}
    assert _endpoint_tags(world) == {INSTANCE_TAG_KEY: LEGACY_INSTANCE_ID, OWNER_TAG_KEY: GRANT_ID}
    for policy in (world.secret_policy(), world.key_policy()):
        sids = [s.get("Sid") for s in policy["Statement"]]
        assert sids.count(spec.statement_sid) == 1 and legacy_statement_sid(GRANT_ID) not in sids
    assert check_drift(spec, clients=clients, expected_role_id=role_id).findings == []


def test_the_legacy_instance_revokes_an_old_grant_completely(world, legacy_grant):
    spec, clients, _ = legacy_grant
    run_steps(REVOKE_STEPS, spec, clients)
    assert world.role() is None and world.endpoint() is None
    assert _sids(world.secret_policy()) == {FOREIGN_SECRET_STATEMENT["Sid"]}
    assert legacy_statement_sid(GRANT_ID) not in _sids(world.key_policy())
    assert FOREIGN_KEY_STATEMENT in world.key_policy()["Statement"]


def test_merge_replaces_an_old_sid_in_place_and_remove_takes_every_owned_sid():
    old = {"Sid": "DmsAccessPortal7", "Effect": "Allow", "Action": "a", "Resource": "*"}
    other = {"Sid": "Other", "Effect": "Allow", "Action": "b", "Resource": "*"}
    new = {**old, "Sid": "DmsAccessPortallegacyRequest7"}
    policy = {"Version": "2012-10-17", "Statement": [old, other]}
    merged = merge_statement(policy, new, replaces=["DmsAccessPortal7"])
    assert merged["Statement"] == [new, other]
    assert merge_statement(merged, new, replaces=["DmsAccessPortal7"]) == merged
    both = {"Version": "2012-10-17", "Statement": [old, other, new]}
    assert remove_statement(both, ["DmsAccessPortallegacyRequest7", "DmsAccessPortal7"])["Statement"] == [other]
