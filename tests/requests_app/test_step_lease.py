"""A step's claim is a short lease: renewed while the step runs, checked before
every AWS write, and given up by a worker that lost it."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from requests_app.workflow import runner, sweeper
from requests_app.workflow.leases import LeaseLost, StepLease
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep
from requests_app.services import access_request_approve, access_request_submit
from tests.aws_world import DATALAKE_ID, REMOTE_ID
from tests.requests_app.fake_engine import FakeEngine
from tests.requests_app.rows import approved_request

GRANT = ProvisioningStep.Phase.GRANT


@pytest.fixture
def short_lease(settings):
    """A lease of two seconds, renewed every 0.3 s; writes need 0.6 s of it left."""
    settings.PROVISIONING_STEP_LEASE_SECONDS = 2
    settings.PROVISIONING_STEP_HEARTBEAT_SECONDS = 0.3
    settings.PROVISIONING_STEP_WRITE_MARGIN_SECONDS = 0.6
    return settings


def claimed_step(request, name="preflight") -> ProvisioningStep:
    """The step ``name`` claimed by this process, as the runner claims it."""
    request.steps.filter(phase=GRANT, position__lt=ProvisioningStep.objects.get(request=request, name=name).position).update(
        status="succeeded"
    )
    claimed = runner._claim_ready_step(request.pk, GRANT)[0]
    assert claimed is not None and claimed[1].name == name
    return claimed[1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only audit trail keeps SQLite from flushing")
def test_a_slow_live_step_keeps_its_lease_for_many_leases(short_lease, enqueued, monkeypatch):
    """The heartbeat renews the lease while the step works, so neither the
    sweep nor a second task takes over a step that runs for three leases."""
    engine = FakeEngine()
    monkeypatch.setattr(runner, "engine_step", engine.step)
    monkeypatch.setattr(runner, "grant_clients_for", lambda spec, **_: object())
    request = approved_request(endpoint_identifier="slow")
    seen = {}

    def slow(spec):
        time.sleep(3 * short_lease.PROVISIONING_STEP_LEASE_SECONDS)
        seen["lost work"] = sweeper.requests_with_lost_work()
        seen["second claim"] = runner._claim_ready_step(request.pk, GRANT)[0]
        seen["lease left"] = (ProvisioningStep.objects.get(request=request, name="preflight").lease_expires_at - timezone.now()).total_seconds()

    engine.during_call["preflight"] = slow

    assert runner.run_step(request.pk, GRANT) == "preflight"

    assert seen["lost work"] == [] and seen["second claim"] is None
    assert seen["lease left"] > short_lease.PROVISIONING_STEP_LEASE_SECONDS - 2 * short_lease.PROVISIONING_STEP_HEARTBEAT_SECONDS
    step = ProvisioningStep.objects.get(request=request, name="preflight")
    assert (step.status, step.attempts) == ("succeeded", 1)
    assert not AuditEvent.objects.filter(request=request, action="step.lease_lapsed").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only audit trail keeps SQLite from flushing")
def test_a_lease_nobody_renews_lapses_within_a_lease(short_lease, enqueued):
    """A claim whose worker stopped renewing it (killed, paused) counts as lost
    once the lease has run out, not minutes later."""
    request = approved_request(endpoint_identifier="abandoned")
    claimed_step(request)  # ...and nothing renews it
    assert sweeper.requests_with_lost_work() == []

    time.sleep(short_lease.PROVISIONING_STEP_LEASE_SECONDS + 0.5)

    assert sweeper.requests_with_lost_work() == [(request.pk, GRANT)]
    _, step = runner._claim_ready_step(request.pk, GRANT)[0]
    assert step.attempts == 2


@pytest.mark.django_db
def test_a_write_is_refused_once_another_attempt_holds_the_step(enqueued):
    request = approved_request(endpoint_identifier="overtaken")
    step = claimed_step(request, "grant_secret_policy")
    lease = StepLease(step)
    lease.check_before_write("secretsmanager", "PutResourcePolicy")  # held: no error

    ProvisioningStep.objects.filter(pk=step.pk).update(attempts=step.attempts + 1)  # another worker's claim

    with pytest.raises(LeaseLost, match="no longer holds"):
        lease.check_before_write("secretsmanager", "PutResourcePolicy")
    with pytest.raises(LeaseLost):
        lease.check_before_write("secretsmanager", "PutResourcePolicy")  # stays lost


@pytest.mark.django_db
def test_a_write_is_refused_when_too_little_of_the_lease_is_left(enqueued, settings):
    request = approved_request(endpoint_identifier="lapsing")
    step = claimed_step(request, "grant_key_policy")
    lease = StepLease(step)
    almost = timezone.now() + timedelta(seconds=settings.PROVISIONING_STEP_WRITE_MARGIN_SECONDS / 2)
    ProvisioningStep.objects.filter(pk=step.pk).update(lease_expires_at=almost)

    with pytest.raises(LeaseLost):
        lease.check_before_write("kms", "PutKeyPolicy")


@pytest.mark.django_db
def test_a_paused_worker_sees_its_lease_gone_before_asking_the_database(enqueued, monkeypatch, settings):
    """time.monotonic() runs on while a process is stopped: a worker resumed
    after longer than its lease refuses to write without a round trip."""
    request = approved_request(endpoint_identifier="paused")
    lease = StepLease(claimed_step(request, "create_role"))
    resumed_at = time.monotonic() + settings.PROVISIONING_STEP_LEASE_SECONDS + 1
    monkeypatch.setattr(time, "monotonic", lambda: resumed_at)

    with connection.execute_wrapper(lambda *args: pytest.fail("asked the database")):
        with pytest.raises(LeaseLost, match="could not be renewed"):
            lease.check_before_write("iam", "CreateRole")


@pytest.mark.django_db
def test_a_worker_overtaken_mid_step_writes_nothing_to_aws(cast, portal_aws, enqueued, monkeypatch):
    """The real engine against moto: the step reads the secret policy, another
    worker takes the step over, and the PutResourcePolicy never happens."""
    world = portal_aws
    request = access_request_submit(
        requester=cast.requester,
        datalake_account_id=DATALAKE_ID,
        secret_arn=world.secret_arn,
        engine="mysql",
        endpoint_identifier="overtaken-db",
        justification="Replicate orders into the lake.",
    )
    with transaction.atomic():
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    policy_before = world.admin(REMOTE_ID, "secretsmanager").get_resource_policy(SecretId=world.secret_arn).get("ResourcePolicy")
    real_engine_step = runner.engine_step

    def overtaken_engine_step(phase, name):
        step = real_engine_step(phase, name)
        if name != "grant_secret_policy":
            return step

        def run(spec, **kwargs):
            ProvisioningStep.objects.filter(request_id=request.pk, name=name).update(attempts=2)
            return step(spec, **kwargs)

        return run

    monkeypatch.setattr(runner, "engine_step", overtaken_engine_step)
    while (ran := runner.run_step(request.pk, GRANT)) not in ("grant_secret_policy", None):
        assert ran in ("preflight", "create_role")

    after = world.admin(REMOTE_ID, "secretsmanager").get_resource_policy(SecretId=world.secret_arn).get("ResourcePolicy")
    assert after == policy_before
    step = ProvisioningStep.objects.get(request=request, name="grant_secret_policy")
    assert (step.status, step.attempts) == ("running", 2)  # the other attempt's to finish
    assert not AuditEvent.objects.filter(request=request, details__step="grant_secret_policy").exists()
    assert AccessRequest.objects.get(pk=request.pk).state == "provisioning"
    assert json.loads(after or "{}") == json.loads(policy_before or "{}")


@pytest.mark.parametrize(
    "overrides",
    [
        {"PROVISIONING_STEP_HEARTBEAT_SECONDS": 15},  # one missed beat and the lease is gone
        {"PROVISIONING_STEP_HEARTBEAT_SECONDS": 0},
        {"PROVISIONING_STEP_WRITE_MARGIN_SECONDS": 25},  # no write would ever start
        {"PROVISIONING_STALL_SECONDS": 30},  # a retry waiting out its backoff looks lost
    ],
)
def test_timing_that_would_lose_live_steps_is_refused_at_start(settings, overrides):
    from django.core.exceptions import ImproperlyConfigured

    from requests_app.workflow.leases import check_lease_timing

    check_lease_timing(settings)  # the defaults hold
    for name, value in overrides.items():
        setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured):
        check_lease_timing(settings)
