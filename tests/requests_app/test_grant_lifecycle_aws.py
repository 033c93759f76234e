"""Expiry, drift and repair of a real grant, with the portal's services and tasks
against the runbook's world in moto (tasks called directly, no broker).

The grant is filed, approved and provisioned through the services and the
step runner; the world's secret and key carry statements of other teams,
which nothing the portal does may touch.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from prometheus_client import generate_latest

from provisioning.documents import ROLE_INLINE_POLICY_NAME, role_inline_policy, role_trust_policy
from provisioning.ownership import owner_tags
from requests_app.workflow import runner, tasks
from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.metrics import scrape_registry
from provisioning.clients import ClientFactory
from requests_app.aws import set_client_factory
from requests_app.models import AccessRequest, AuditEvent, RepairRequest, RequestState
from requests_app.services import (
    access_request_approve,
    access_request_repair,
    access_request_repair_approve,
    access_request_submit,
)
from tests.provisioning.botocore_hooks import AwsCallCounter
from tests.aws_world import DATALAKE_ID, FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, REMOTE_ID

pytestmark = pytest.mark.django_db


@pytest.fixture
def drift_rechecks(monkeypatch) -> list[int]:
    """Drift checks asked for after a repair, instead of a broker."""
    asked: list[int] = []
    monkeypatch.setattr("requests_app.services.drift.enqueue_drift_check", asked.append)
    return asked


@pytest.fixture
def drive(django_capture_on_commit_callbacks, enqueued):
    """Run a phase's steps to the end, as the workers would one task at a time."""

    def run_phase(request: AccessRequest, phase: str) -> AccessRequest:
        while True:
            with django_capture_on_commit_callbacks(execute=True):
                if runner.run_step(request.pk, phase) is None:
                    break
        return AccessRequest.objects.get(pk=request.pk)

    return run_phase


@pytest.fixture
def grant(cast, portal_aws, drive, django_capture_on_commit_callbacks) -> AccessRequest:
    """The runbook's grant, active, expiring in ten days, next to other teams' statements."""
    portal_aws.seed_foreign_statements()
    request = access_request_submit(
        requester=cast.requester,
        datalake_account_id=DATALAKE_ID,
        secret_arn=portal_aws.secret_arn,
        engine="mysql",
        endpoint_identifier="source-db-mysql",
        justification="Replicate orders into the lake.",
        expires_at=timezone.now() + timedelta(days=10),
    )
    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    request = drive(request, "grant")
    assert request.state == RequestState.ACTIVE, request.diagnosis
    mail.outbox.clear()
    return request


def _role(world, name):
    iam = world.admin(DATALAKE_ID, "iam")
    try:
        return iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return None


def _endpoints(world):
    return world.admin(DATALAKE_ID, "dms").describe_endpoints()["Endpoints"]


def _actions(request):
    return list(AuditEvent.objects.filter(request=request).order_by("id").values_list("action", flat=True))


def test_an_expired_grant_is_revoked_by_the_periodic_task_and_foreign_statements_stay(grant, portal_aws, drive):
    world = portal_aws
    assert _role(world, grant.role_name) is not None and len(_endpoints(world)) == 1
    AccessRequest.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    assert tasks.sweep()["expired"] == 1
    request = AccessRequest.objects.get(pk=grant.pk)
    assert request.state == RequestState.REVOKING
    expired = AuditEvent.objects.get(request=request, action="request.expired")
    assert (expired.actor_id, expired.actor_label) == (None, "worker")

    request = drive(request, "revoke")
    assert request.state == RequestState.REVOKED
    assert _role(world, grant.role_name) is None
    assert _endpoints(world) == []
    assert world.secret_policy() == {"Version": "2012-10-17", "Statement": [FOREIGN_SECRET_STATEMENT]}
    key_statements = world.key_policy()["Statement"]
    assert FOREIGN_KEY_STATEMENT in key_statements
    assert grant_spec_for(request).statement_sid not in {s.get("Sid") for s in key_statements}
    assert any(s["Principal"] == {"AWS": f"arn:aws:iam::{REMOTE_ID}:root"} for s in key_statements)
    assert _actions(request)[-6:] == [
        "request.expired",
        "aws.delete_endpoint",
        "aws.revoke_key_policy",
        "aws.revoke_secret_policy",
        "aws.delete_role",
        "request.revoked",
    ]
    # Nothing left to expire; a grant not yet due is never touched.
    assert tasks.sweep()["expired"] == 0
    assert verify_chain().ok


def test_a_grant_not_yet_expired_stays(grant):
    assert tasks.sweep()["expired"] == 0
    assert AccessRequest.objects.get(pk=grant.pk).state == RequestState.ACTIVE


def test_a_fresh_grant_records_its_role_id_and_has_no_drift(grant, portal_aws):
    assert grant.role_id == _role(portal_aws, grant.role_name)["RoleId"]
    assert tasks.check_grant_drift(grant.pk) == []
    request = AccessRequest.objects.get(pk=grant.pk)
    assert request.drift["drifted"] is False and request.drift_checked_at is not None
    assert "grant.drift_detected" not in _actions(request)


def _secret_statement_removed(world, request):
    sid = grant_spec_for(request).statement_sid
    policy = world.secret_policy()
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != sid]
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn, ResourcePolicy=json.dumps(policy))


def _metric(name: str) -> str:
    return [line for line in generate_latest(scrape_registry()).decode().splitlines() if line.startswith(name)]


def test_drift_is_detected_shown_counted_notified_and_repaired(grant, portal_aws, drive, cast, drift_rechecks,
                                                               django_capture_on_commit_callbacks):
    world = portal_aws
    _secret_statement_removed(world, grant)

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.check_grant_drift(grant.pk) == ["secret_statement_missing"]
    request = AccessRequest.objects.get(pk=grant.pk)
    assert request.drift["drifted"] is True
    (finding,) = request.drift["findings"]
    assert (finding["kind"], finding["resource"]) == ("secret_statement_missing", world.secret_arn)
    detected = AuditEvent.objects.get(request=request, action="grant.drift_detected")
    assert detected.details["kinds"] == ["secret_statement_missing"]
    assert [m.subject for m in mail.outbox] == [f"[DMS Access Portal] #{grant.pk} drifted from its plan"]
    assert set(mail.outbox[0].to) == {cast.requester.email, cast.approver.email, cast.second_approver.email}
    assert _metric("portal_grants_drifted ") == ["portal_grants_drifted 1.0"]
    assert 'portal_grant_drift_findings{kind="secret_statement_missing"} 1.0' in _metric("portal_grant_drift_findings")

    # The same drift found again is not news.
    with django_capture_on_commit_callbacks(execute=True):
        tasks.check_grant_drift(grant.pk)
    assert _actions(request).count("grant.drift_detected") == 1 and len(mail.outbox) == 1

    # The statement was removed in the Remote account: the requester only asks its approvers.
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        asked = access_request_repair(request_id=grant.pk, user=cast.requester, source_ip="10.0.0.9")
    assert asked.state == RequestState.ACTIVE
    assert drive(asked, "grant").state == RequestState.ACTIVE  # nothing to run
    assert world.secret_policy()["Statement"] == [FOREIGN_SECRET_STATEMENT]
    assert [m.subject for m in mail.outbox] == [f"[DMS Access Portal] #{grant.pk} asks for a repair"]
    assert set(mail.outbox[0].to) == {cast.approver.email, cast.second_approver.email}

    with django_capture_on_commit_callbacks(execute=True):
        repairing = access_request_repair_approve(
            request_id=grant.pk, user=cast.approver, plan_hash=grant.plan_hash, comment="Put it back."
        )
    assert repairing.state == RequestState.PROVISIONING
    assert repairing.plan_hash == grant.plan_hash
    request = drive(repairing, "grant")
    assert request.state == RequestState.ACTIVE
    assert drift_rechecks == [grant.pk]
    statements = world.secret_policy()["Statement"]
    assert statements[0] == FOREIGN_SECRET_STATEMENT
    assert statements[1] == request.plan["secret_policy_statement"]

    assert tasks.check_grant_drift(grant.pk) == []
    request = AccessRequest.objects.get(pk=grant.pk)
    assert request.drift["drifted"] is False
    assert _metric("portal_grants_drifted ") == ["portal_grants_drifted 0.0"]
    actions = _actions(request)
    repair = actions[actions.index("repair.requested"):]
    assert repair[:3] == ["repair.requested", "decision.repair_approve", "grant.repair_requested"]
    # Only what drifted was written; the check after the repair clears the drift.
    assert [a for a in repair if a.startswith("aws.")] == ["aws.grant_secret_policy"]
    assert repair[-2:] == ["request.active", "grant.drift_cleared"]
    assert verify_chain().ok


def test_a_role_created_again_is_flagged_and_repair_records_the_new_role(grant, portal_aws, drive, cast,
                                                                        drift_rechecks):
    world = portal_aws
    iam = world.admin(DATALAKE_ID, "iam")
    spec = grant_spec_for(grant)
    iam.delete_role_policy(RoleName=grant.role_name, PolicyName=ROLE_INLINE_POLICY_NAME)
    iam.delete_role(RoleName=grant.role_name)
    iam.create_role(RoleName=grant.role_name, AssumeRolePolicyDocument=json.dumps(role_trust_policy(spec)),
                    Tags=owner_tags(spec))
    iam.put_role_policy(RoleName=grant.role_name, PolicyName=ROLE_INLINE_POLICY_NAME,
                        PolicyDocument=json.dumps(role_inline_policy(spec)))

    assert tasks.check_grant_drift(grant.pk) == ["role_recreated"]

    request = drive(access_request_repair(request_id=grant.pk, user=cast.approver), "grant")
    assert request.role_id == _role(world, grant.role_name)["RoleId"] != grant.role_id
    assert tasks.check_grant_drift(grant.pk) == []


def test_a_deleted_datalake_role_is_repaired_by_the_requester_without_writing_the_remote_policies(
    grant, portal_aws, drive, cast, drift_rechecks, django_capture_on_commit_callbacks
):
    world = portal_aws
    iam = world.admin(DATALAKE_ID, "iam")
    iam.delete_role_policy(RoleName=grant.role_name, PolicyName=ROLE_INLINE_POLICY_NAME)
    iam.delete_role(RoleName=grant.role_name)
    assert tasks.check_grant_drift(grant.pk) == ["role_missing"]
    secret_before, key_before = world.secret_policy(), world.key_policy()

    # Count the portal's calls from here on: fresh clients on the counted session.
    counter = AwsCallCounter(world.base_session)
    set_client_factory(ClientFactory(base_session=world.base_session))
    with counter.phase("repair"):
        with django_capture_on_commit_callbacks(execute=True):
            repairing = access_request_repair(request_id=grant.pk, user=cast.requester)
        assert repairing.state == RequestState.PROVISIONING
        request = drive(repairing, "grant")
    assert request.state == RequestState.ACTIVE, request.diagnosis

    writes = counter.writes("repair")
    assert writes.get("iam:CreateRole") == 1
    assert not [op for op in writes if op.startswith(("secretsmanager:", "kms:"))], writes
    assert world.secret_policy() == secret_before and world.key_policy() == key_before
    assert request.role_id == _role(world, grant.role_name)["RoleId"] != grant.role_id
    steps = {step.name: step.attempts for step in request.steps.filter(phase="grant")}
    assert steps == {"preflight": 2, "create_role": 2, "grant_secret_policy": 1, "grant_key_policy": 1,
                     "create_endpoint": 1, "verify": 2}
    assert not RepairRequest.objects.filter(request=grant).exists()
    assert tasks.check_grant_drift(grant.pk) == []


def test_a_drift_check_of_a_grant_that_is_no_longer_active_does_nothing(grant, portal_aws, cast, enqueued):
    from requests_app.services import access_request_revoke

    access_request_revoke(request_id=grant.pk, user=cast.requester)
    assert tasks.check_grant_drift(grant.pk) is None
    assert AccessRequest.objects.get(pk=grant.pk).drift_checked_at is None


def test_the_periodic_check_queues_one_check_per_active_grant(grant, cast, monkeypatch):
    other = cast.request(state=RequestState.ACTIVE)
    cast.request(state=RequestState.REVOKED)
    queued = []
    monkeypatch.setattr(tasks.check_grant_drift, "delay", queued.append)
    assert tasks.check_drift() == 2
    assert sorted(queued) == sorted([grant.pk, other.pk])


def test_another_portal_instance_with_the_same_request_id_leaves_the_grant_alone(grant, portal_aws, drive, settings):
    """A restored copy of this database running as another instance: its request
    #N is not this portal's #N, so its drift check and revoke touch nothing."""
    world = portal_aws
    before = world.state()
    ours = grant_spec_for(grant)
    settings.PORTAL_INSTANCE_ID = "restoredcopy"
    theirs = grant_spec_for(grant)
    assert (theirs.instance_id, theirs.grant_id) == ("restoredcopy", ours.grant_id)
    assert theirs.statement_sid != ours.statement_sid

    assert set(tasks.check_grant_drift(grant.pk)) == {
        "role_missing", "secret_statement_missing", "key_statement_missing", "endpoint_missing"
    }
    settings.PORTAL_INSTANCE_ID = ours.instance_id
    assert tasks.check_grant_drift(grant.pk) == []

    settings.PORTAL_INSTANCE_ID = "restoredcopy"
    AccessRequest.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert tasks.sweep()["expired"] == 1
    assert drive(AccessRequest.objects.get(pk=grant.pk), "revoke").state == RequestState.REVOKED
    assert world.state() == before
    assert world.secret_policy() is not None and ours.statement_sid in {
        s.get("Sid") for s in world.secret_policy()["Statement"]
    }
