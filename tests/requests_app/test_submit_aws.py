"""Filing end to end against the runbook's world in moto: preflight, plan, approvals bound to it."""
from __future__ import annotations

import pytest

from provisioning.documents import PLAN_KEYS, plan_hash
from requests_app.errors import IdempotencyConflict, InvalidTransition, NotAllowed, PlanChanged, ValidationFailed
from requests_app.models import AccessRequest, AuditEvent, RequestState
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_refresh_preflight,
    access_request_submit,
)
from tests.aws_world import DATALAKE_ID, PROVISIONER_ROLE, REGION, REMOTE_ID


def _file(cast, world, **overrides) -> AccessRequest:
    fields = {
        "requester": cast.requester,
        "datalake_account_id": DATALAKE_ID,
        "secret_arn": world.secret_arn,
        "engine": "mysql",
        "endpoint_identifier": "source-db-mysql",
        "justification": "Replicate orders into the lake.",
        "replication_instance_arn": world.replication_instance_arn,
        "source_ip": "10.0.0.5",
    }
    return access_request_submit(**{**fields, **overrides})


def _re_encrypt(world, secret_arn: str) -> str:
    """The Remote owner moves the secret to a new customer-managed key; returns its ARN."""
    kms = world.admin(REMOTE_ID, "kms")
    key_arn = kms.create_key(Description="rotated")["KeyMetadata"]["Arn"]
    world.admin(REMOTE_ID, "secretsmanager").update_secret(SecretId=secret_arn, KmsKeyId=key_arn)
    return key_arn


def test_filing_resolves_the_key_builds_the_plan_and_changes_nothing_in_aws(cast, portal_aws):
    world = portal_aws
    request = _file(cast, world)

    assert request.state == RequestState.PENDING_APPROVAL
    assert (request.region, request.remote_account) == (REGION, cast.remote)
    assert request.role_name == "dms-secret-source-db-mysql"
    assert request.preflight_status == "passed" and request.diagnosis == ""
    assert request.resolved_kms_key_arn == world.key_arn
    assert request.preflight["ok"] is True and request.preflight["kms_key_arn"] == world.key_arn
    assert set(request.plan) == set(PLAN_KEYS)
    assert request.plan_hash == plan_hash(request.plan)
    inline = request.plan["role_inline_policy"]["Statement"]
    assert {statement["Resource"] for statement in inline} == {world.secret_arn, world.key_arn}
    assert request.plan["secret_policy_statement"]["Principal"] == {
        "AWS": f"arn:aws:iam::{DATALAKE_ID}:role/dms-secret-source-db-mysql"
    }
    assert str(request.pk) in request.plan["secret_policy_statement"]["Sid"]

    event = AuditEvent.objects.get(request=request)
    assert (event.action, event.actor_label, event.source_ip) == ("request.submitted", "dana", "10.0.0.5")
    assert event.details["plan_hash"] == request.plan_hash
    # Preflight only read.
    roles = [r["RoleName"] for r in world.admin(DATALAKE_ID, "iam").list_roles()["Roles"]]
    assert roles == [PROVISIONER_ROLE]
    assert world.secret_policy() is None
    assert world.admin(DATALAKE_ID, "dms").describe_endpoints()["Endpoints"] == []


def test_a_key_named_by_alias_resolves_to_the_secrets_key(cast, portal_aws):
    request = _file(cast, portal_aws, kms_key_arn=portal_aws.key_alias_arn)
    assert request.preflight_status == "passed"
    assert request.plan["role_inline_policy"]["Statement"][1]["Resource"] == portal_aws.key_arn


def test_a_key_that_is_not_the_secrets_is_a_failed_preflight(cast, portal_aws):
    other_key = portal_aws.admin(REMOTE_ID, "kms").create_key(Description="other")["KeyMetadata"]["Arn"]
    request = _file(cast, portal_aws, kms_key_arn=other_key)
    assert (request.state, request.preflight_status, request.diagnosis) == ("pending_approval", "failed", "key_mismatch")


def test_a_secret_under_the_aws_managed_key_is_filed_but_cannot_be_approved(cast, portal_aws, enqueued):
    request = _file(cast, portal_aws, secret_arn=portal_aws.managed_secret_arn)
    assert request.state == RequestState.PENDING_APPROVAL
    assert (request.preflight_status, request.diagnosis) == ("failed", "aws_managed_key")
    assert request.preflight["diagnosis"] == "aws_managed_key"
    with pytest.raises(NotAllowed, match="aws_managed_key"):
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)

    # The owner re-encrypts it under a CMK; a re-run preflight now passes and it can be approved.
    key_arn = _re_encrypt(portal_aws, portal_aws.managed_secret_arn)
    refreshed = access_request_refresh_preflight(request_id=request.pk, user=cast.requester)
    assert (refreshed.preflight_status, refreshed.diagnosis, refreshed.resolved_kms_key_arn) == ("passed", "", key_arn)
    assert refreshed.plan_hash == plan_hash(refreshed.plan)
    approved = access_request_approve(request_id=request.pk, plan_hash=refreshed.plan_hash, user=cast.approver)
    assert approved.state == RequestState.APPROVED


def test_a_secret_that_does_not_exist_is_filed_with_its_diagnosis(cast, portal_aws):
    missing = portal_aws.secret_arn.replace("credentials", "gone")
    request = _file(cast, portal_aws, secret_arn=missing)
    assert request.preflight_status == "failed"
    assert request.diagnosis == "secret_not_found"
    assert request.plan == {} and request.plan_hash == ""


def test_a_changed_plan_voids_earlier_approvals(cast, portal_aws, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = _file(cast, portal_aws)
    first_hash = request.plan_hash
    access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)

    new_key = _re_encrypt(portal_aws, portal_aws.secret_arn)
    refreshed = access_request_refresh_preflight(request_id=request.pk, user=cast.second_approver, source_ip="10.3.3.3")
    assert refreshed.plan_hash != first_hash
    assert refreshed.resolved_kms_key_arn == new_key
    event = AuditEvent.objects.filter(request=request, action="request.preflight_refreshed").get()
    assert event.details["plan_changed"] is True and event.details["previous_plan_hash"] == first_hash

    # An approval of the plan as it was shown before the refresh is refused.
    with pytest.raises(PlanChanged) as stale:
        access_request_approve(request_id=request.pk, plan_hash=first_hash, user=cast.second_approver)
    assert stale.value.current_plan_hash == refreshed.plan_hash
    after_second = access_request_approve(request_id=request.pk, plan_hash=refreshed.plan_hash, user=cast.second_approver)
    assert after_second.state == RequestState.PENDING_APPROVAL  # the first approval was of the old plan
    approved = access_request_approve(request_id=request.pk, plan_hash=refreshed.plan_hash, user=cast.approver)
    assert approved.state == RequestState.APPROVED


def test_an_unchanged_world_gives_the_same_plan_on_refresh(cast, portal_aws):
    request = _file(cast, portal_aws)
    refreshed = access_request_refresh_preflight(request_id=request.pk, user=cast.approver)
    assert refreshed.plan_hash == request.plan_hash
    with pytest.raises(NotAllowed):
        access_request_refresh_preflight(request_id=request.pk, user=cast.staff)
    access_request_cancel(request_id=request.pk, user=cast.requester)
    with pytest.raises(InvalidTransition):
        access_request_refresh_preflight(request_id=request.pk, user=cast.requester)


def test_the_same_idempotency_key_and_body_give_the_same_request(cast, portal_aws):
    first = _file(cast, portal_aws, idempotency_key="deploy-42")
    again = _file(cast, portal_aws, idempotency_key="deploy-42")
    assert again.pk == first.pk
    assert AccessRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="request.submitted").count() == 1

    with pytest.raises(IdempotencyConflict) as conflict:
        _file(cast, portal_aws, idempotency_key="deploy-42", justification="Something else.")
    assert conflict.value.status_code == 409
    assert AccessRequest.objects.count() == 1


def test_a_live_request_holds_its_role_name_and_endpoint_identifier(cast, portal_aws):
    first = _file(cast, portal_aws)
    with pytest.raises(ValidationFailed) as taken:
        _file(cast, portal_aws, role_name="DMS-SECRET-SOURCE-DB-MYSQL", endpoint_identifier="other-endpoint")
    assert list(taken.value.errors) == ["role_name"]
    with pytest.raises(ValidationFailed) as taken:
        _file(cast, portal_aws, role_name="another-role")
    assert list(taken.value.errors) == ["endpoint_identifier"]

    access_request_cancel(request_id=first.pk, user=cast.requester)
    assert _file(cast, portal_aws).pk != first.pk  # free again once the first is no longer live


def test_a_request_filed_at_the_same_moment_with_the_same_names_is_refused_by_name(cast, portal_aws, monkeypatch):
    _file(cast, portal_aws)
    # The other request commits between this one's check and its insert: the
    # check sees nothing, the database's partial unique constraint catches it.
    monkeypatch.setattr("requests_app.validation._taken_names", lambda errors, **kwargs: None)
    with pytest.raises(ValidationFailed) as taken:
        _file(cast, portal_aws, endpoint_identifier="another-endpoint", role_name="dms-secret-source-db-mysql")
    assert "role_name" in taken.value.errors
    assert AccessRequest.objects.count() == 1
