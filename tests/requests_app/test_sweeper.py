"""The sweeper finds in-flight requests nobody is working on, and only those."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from requests_app.workflow import sweeper
from requests_app.models import AccessRequest, ProvisioningStep
from requests_app.workflow.scheduling import schedule_revoke
from tests.requests_app.rows import approved_request, request_row

pytestmark = pytest.mark.django_db


def seconds_ago(seconds):
    return timezone.now() - timedelta(seconds=seconds)


def quiet_since(request, seconds):
    AccessRequest.objects.filter(pk=request.pk).update(updated_at=seconds_ago(seconds))


def test_approved_request_whose_task_never_arrived_is_enqueued_again(enqueued, settings):
    request = approved_request(endpoint_identifier="orders")
    quiet_since(request, settings.PROVISIONING_STALL_SECONDS + 5)

    assert sweeper.sweep_lost_work() == [(request.pk, "grant")]
    assert enqueued == [(request.pk, "grant")]


def test_freshly_approved_request_is_left_to_its_queued_task(enqueued):
    approved_request(endpoint_identifier="orders")

    assert sweeper.sweep_lost_work() == []


def test_step_whose_lease_ran_out_means_its_worker_died(enqueued, settings):
    request = approved_request(endpoint_identifier="orders")
    quiet_since(request, 3600)
    ProvisioningStep.objects.filter(request=request, name="create_role").update(
        status="running", started_at=seconds_ago(8), lease_expires_at=seconds_ago(1)
    )

    assert sweeper.requests_with_lost_work() == [(request.pk, "grant")]


def test_step_running_within_its_lease_is_left_alone(enqueued, settings):
    request = approved_request(endpoint_identifier="orders")
    quiet_since(request, 3600)
    # Started long before (a slow step), its lease renewed a moment ago.
    ProvisioningStep.objects.filter(request=request, name="create_role").update(
        status="running", started_at=seconds_ago(3600), lease_expires_at=seconds_ago(-20)
    )

    assert sweeper.requests_with_lost_work() == []


def test_sweep_and_stall_follow_the_lease_not_minutes(settings):
    """A dead worker's step is noticed a fraction of a lease after it lapses,
    and a lost message soon after, while a step waiting out its longest retry
    backoff is not taken for lost."""
    lease = settings.PROVISIONING_STEP_LEASE_SECONDS
    assert 20 <= lease <= 30
    assert settings.PROVISIONING_STEP_HEARTBEAT_SECONDS <= lease / 4
    assert settings.PROVISIONING_SWEEP_INTERVAL_SECONDS <= lease / 2
    assert settings.PROVISIONING_RETRY_BACKOFF_MAX < settings.PROVISIONING_STALL_SECONDS <= 2 * lease
    assert settings.PROVISIONING_STEP_WRITE_MARGIN_SECONDS < lease - 2 * settings.PROVISIONING_STEP_HEARTBEAT_SECONDS


def test_step_waiting_for_its_retry_is_left_alone_until_it_stalls(enqueued, settings):
    request = approved_request(endpoint_identifier="orders")
    quiet_since(request, 3600)
    step = ProvisioningStep.objects.filter(request=request, name="create_role")
    step.update(status="pending", attempts=1, started_at=seconds_ago(12), finished_at=seconds_ago(10))

    assert sweeper.requests_with_lost_work() == []

    stall = settings.PROVISIONING_STALL_SECONDS
    step.update(started_at=seconds_ago(stall + 3), finished_at=seconds_ago(stall + 1))
    assert sweeper.requests_with_lost_work() == [(request.pk, "grant")]


def test_revoking_request_is_swept_for_its_revoke_steps(enqueued, settings):
    request = request_row(endpoint_identifier="orders", state=AccessRequest.State.REVOKING)
    schedule_revoke(request)
    quiet_since(request, settings.PROVISIONING_STALL_SECONDS + 5)

    assert sweeper.requests_with_lost_work() == [(request.pk, "revoke")]


@pytest.mark.parametrize("state", ["pending_approval", "active", "failed", "revoked", "cancelled", "rejected"])
def test_requests_at_rest_are_never_swept(enqueued, state):
    request = request_row(endpoint_identifier=f"orders-{state.replace('_', '-')}", state=state)
    quiet_since(request, 10**6)

    assert sweeper.requests_with_lost_work() == []


def test_active_grant_past_its_expiry_is_revoked(enqueued):
    expired = request_row(endpoint_identifier="expired", state="active", expires_at=seconds_ago(5))
    current = request_row(endpoint_identifier="current", state="active", expires_at=timezone.now() + timedelta(days=1))

    assert sweeper.expire_due_grants() == [expired.pk]

    expired.refresh_from_db()
    current.refresh_from_db()
    assert (expired.state, current.state) == ("revoking", "active")
    assert expired.steps.filter(phase="revoke", status="pending").count() == 4
    assert expired.audit_events.filter(action="request.expired").exists()


def test_work_the_sweep_resent_is_not_resent_by_every_sweep(enqueued, settings):
    """Beat and every worker sweep; a request whose re-sent task waits in a
    long queue gets one more message per lease at most, not one per sweep."""
    request = approved_request(endpoint_identifier="orders")
    quiet_since(request, 3600)
    ProvisioningStep.objects.filter(request=request, name="create_role").update(
        status="running", started_at=seconds_ago(60), lease_expires_at=seconds_ago(5)
    )

    assert sweeper.sweep_lost_work() == [(request.pk, "grant")]
    assert sweeper.sweep_lost_work() == [] and sweeper.sweep_lost_work() == []
    assert enqueued == [(request.pk, "grant")]
    request.refresh_from_db()
    assert request.updated_at < seconds_ago(3000)  # bookkeeping, not a change of the request

    AccessRequest.objects.filter(pk=request.pk).update(
        lost_work_sent_at=seconds_ago(settings.PROVISIONING_STEP_LEASE_SECONDS + 1)
    )
    assert sweeper.sweep_lost_work() == [(request.pk, "grant")]


def test_stalled_work_resent_waits_a_stall_time_before_the_next_resend(enqueued, settings):
    request = approved_request(endpoint_identifier="orders")
    quiet_since(request, settings.PROVISIONING_STALL_SECONDS + 5)

    assert sweeper.sweep_lost_work() == [(request.pk, "grant")]
    assert sweeper.sweep_lost_work() == []

    AccessRequest.objects.filter(pk=request.pk).update(lost_work_sent_at=seconds_ago(settings.PROVISIONING_STALL_SECONDS + 1))
    assert sweeper.sweep_lost_work() == [(request.pk, "grant")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only audit trail keeps SQLite from flushing")
def test_a_worker_sweeps_by_itself_so_a_dead_beat_strands_nothing(enqueued):
    request = approved_request(endpoint_identifier="orders")
    ProvisioningStep.objects.filter(request=request, name="preflight").update(
        status="running", attempts=1, started_at=seconds_ago(40), lease_expires_at=seconds_ago(2)
    )

    worker_sweep = sweeper.WorkerSweep(interval=0.2).start()
    try:
        deadline = time.monotonic() + 10
        while not enqueued and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker_sweep.stop()

    assert enqueued == [(request.pk, "grant")]


def test_a_resend_the_broker_refused_is_tried_again_at_the_next_sweep(monkeypatch, settings):
    """Redis down: the re-send failed, so nothing holds the next sweep back."""
    request = approved_request(endpoint_identifier="orders")
    quiet_since(request, settings.PROVISIONING_STALL_SECONDS + 5)
    attempts = []
    monkeypatch.setattr(
        "requests_app.workflow.scheduling.enqueue_next_step", lambda request_id, phase: attempts.append(request_id) and False
    )

    assert sweeper.sweep_lost_work() == [(request.pk, "grant")]
    assert sweeper.sweep_lost_work() == [(request.pk, "grant")]
    assert attempts == [request.pk, request.pk]
