"""The workflow runner against a fake engine: what a request and its steps
look like after each step, and how failures and duplicates are handled."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from provisioning.errors import PermanentAwsError, RetryableAwsError
from provisioning.steps import table
from requests_app.workflow import runner
from requests_app.audit import verify_chain
from requests_app.workflow.locks import arn_lock
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep
from requests_app.workflow.scheduling import schedule_revoke
from tests.requests_app.fake_engine import ENDPOINT_ARN, ROLE_ARN, FakeEngine, preflight_report
from tests.requests_app.rows import KEY_ARN, approved_request, request_row

pytestmark = pytest.mark.django_db
GRANT = ProvisioningStep.Phase.GRANT
REVOKE = ProvisioningStep.Phase.REVOKE


@pytest.fixture
def engine(monkeypatch):
    fake = FakeEngine()
    monkeypatch.setattr(runner, "engine_step", fake.step)
    monkeypatch.setattr(runner, "grant_clients_for", lambda spec, **_: object())
    return fake


def run(request_id, phase=GRANT, *, final_attempt=False, capture=None):
    with capture(execute=True):
        return runner.run_step(request_id, phase, final_attempt=final_attempt)


def run_until_idle(request_id, capture, phase=GRANT):
    ran = []
    while (name := run(request_id, phase, capture=capture)) is not None:
        ran.append(name)
    return ran


def steps_of(request, phase=GRANT):
    return {step.name: step for step in request.steps.filter(phase=phase)}


def actions(request):
    return list(AuditEvent.objects.filter(request=request).values_list("action", flat=True))


def test_grant_runs_every_step_in_order_and_ends_active(engine, enqueued, django_capture_on_commit_callbacks):
    request = approved_request(endpoint_identifier="orders")

    ran = run_until_idle(request.pk, django_capture_on_commit_callbacks)

    request.refresh_from_db()
    assert ran == list(table.names(GRANT))
    assert engine.names_called() == list(table.names(GRANT))
    assert request.state == AccessRequest.State.ACTIVE
    assert request.completed_at is not None
    assert (request.role_arn, request.endpoint_arn) == (ROLE_ARN, ENDPOINT_ARN)
    assert request.preflight_status == AccessRequest.PreflightStatus.PASSED
    assert request.resolved_kms_key_arn == KEY_ARN
    assert all(s.status == "succeeded" and s.attempts == 1 and s.finished_at for s in steps_of(request).values())
    # One enqueue per step after the first, each after its step's commit.
    assert enqueued == [(request.pk, GRANT)] * (len(table.names(GRANT)) - 1)
    assert verify_chain().ok


def test_audit_trail_names_each_step_and_the_aws_writes(engine, enqueued, django_capture_on_commit_callbacks):
    engine.script("grant_secret_policy", {"changed": False, "before": {"S": 1}, "after": {"S": 1}})
    request = approved_request(endpoint_identifier="orders")

    run_until_idle(request.pk, django_capture_on_commit_callbacks)

    assert actions(request) == [
        "decision.approve",
        "request.approved",
        "request.provisioning",
        "step.preflight.passed",
        "aws.create_role",
        "step.grant_secret_policy.unchanged",
        "aws.grant_key_policy",
        "aws.create_endpoint",
        "step.verify.passed",
        "request.active",
    ]
    request.refresh_from_db()
    key_event = AuditEvent.objects.get(request=request, action="aws.grant_key_policy")
    # The key preflight resolved from the secret is the one written to.
    assert key_event.target_arn == request.resolved_kms_key_arn
    assert key_event.account.account_id == "222222222222"
    assert key_event.actor_label == "worker"
    assert key_event.details["before"] == {"Statement": ["root"]}
    assert key_event.details["after"] == {"Statement": ["root", "key"]}
    assert key_event.details["aws_request_ids"] == ["req-grant_key_policy"]
    role_event = AuditEvent.objects.get(request=request, action="aws.create_role")
    assert (role_event.target_arn, role_event.account.account_id) == (ROLE_ARN, "111111111111")
    unchanged = AuditEvent.objects.get(request=request, action="step.grant_secret_policy.unchanged")
    assert "before" not in unchanged.details and unchanged.target_arn == request.secret_arn


def test_first_step_moves_approved_to_provisioning(engine, enqueued, django_capture_on_commit_callbacks):
    request = approved_request(endpoint_identifier="orders")

    assert run(request.pk, capture=django_capture_on_commit_callbacks) == "preflight"

    request.refresh_from_db()
    assert request.state == AccessRequest.State.PROVISIONING
    assert steps_of(request)["preflight"].status == "succeeded"
    assert steps_of(request)["create_role"].status == "pending"


def test_duplicate_task_finds_the_step_claimed_and_does_nothing(engine, enqueued, django_capture_on_commit_callbacks):
    request = approved_request(endpoint_identifier="orders")
    ProvisioningStep.objects.filter(request=request, name="preflight").update(
        status="running", attempts=1, started_at=timezone.now(), lease_expires_at=timezone.now() + timedelta(seconds=20)
    )

    assert run(request.pk, capture=django_capture_on_commit_callbacks) is None

    assert engine.calls == []
    assert steps_of(request)["preflight"].attempts == 1


def test_step_running_past_its_lease_is_run_again(engine, enqueued, django_capture_on_commit_callbacks, settings):
    request = approved_request(endpoint_identifier="orders")
    started = timezone.now() - timedelta(seconds=settings.PROVISIONING_STEP_LEASE_SECONDS + 3)
    lapsed = timezone.now() - timedelta(seconds=1)
    ProvisioningStep.objects.filter(request=request, name="preflight").update(
        status="running", attempts=1, started_at=started, lease_expires_at=lapsed
    )

    assert run(request.pk, capture=django_capture_on_commit_callbacks) == "preflight"

    step = steps_of(request)["preflight"]
    assert (step.status, step.attempts) == ("succeeded", 2)
    # The trail says which attempt was given up, when its lease ran out, and which one replaced it.
    takeover = AuditEvent.objects.get(request=request, action="step.lease_lapsed")
    assert takeover.details["step"] == "preflight"
    assert (takeover.details["lapsed_attempt"], takeover.details["attempt"]) == (1, 2)
    assert takeover.details["lease_expired_at"] == lapsed.isoformat()
    assert takeover.created_at > lapsed
    assert verify_chain().ok


def test_step_started_long_ago_whose_lease_is_renewed_is_left_alone(engine, enqueued, django_capture_on_commit_callbacks):
    """A slow but live step (minutes of AWS retries) keeps its worker: the
    heartbeat renews its lease, however long ago it started."""
    request = approved_request(endpoint_identifier="orders")
    ProvisioningStep.objects.filter(request=request, name="preflight").update(
        status="running",
        attempts=1,
        started_at=timezone.now() - timedelta(minutes=15),
        lease_expires_at=timezone.now() + timedelta(seconds=25),
    )

    assert run(request.pk, capture=django_capture_on_commit_callbacks) is None

    assert engine.calls == []
    assert steps_of(request)["preflight"].attempts == 1
    assert not AuditEvent.objects.filter(request=request, action="step.lease_lapsed").exists()


def test_finished_request_never_reruns_a_step(engine, enqueued, django_capture_on_commit_callbacks):
    request = approved_request(endpoint_identifier="orders")
    run_until_idle(request.pk, django_capture_on_commit_callbacks)
    calls = len(engine.calls)

    assert run(request.pk, capture=django_capture_on_commit_callbacks) is None
    assert len(engine.calls) == calls


def test_attempt_overtaken_after_its_lease_does_not_record(engine, enqueued, django_capture_on_commit_callbacks):
    request = approved_request(endpoint_identifier="orders")

    def another_worker_takes_over(spec):
        ProvisioningStep.objects.filter(request=request, name="preflight").update(attempts=2)

    engine.during_call["preflight"] = another_worker_takes_over

    run(request.pk, capture=django_capture_on_commit_callbacks)

    step = steps_of(request)["preflight"]
    assert (step.status, step.attempts) == ("running", 2)
    assert enqueued == []
    assert "step.preflight.passed" not in actions(request)


def test_policy_steps_run_under_the_arn_lock(engine, enqueued, django_capture_on_commit_callbacks):
    request = approved_request(endpoint_identifier="orders")

    run_until_idle(request.pk, django_capture_on_commit_callbacks)

    kwargs = dict(engine.calls)
    assert kwargs["grant_secret_policy"]["lock"] is arn_lock
    assert kwargs["grant_key_policy"]["lock"] is arn_lock
    assert "lock" not in kwargs["create_role"]


def test_retryable_error_puts_the_step_back_for_a_later_try(engine, enqueued, django_capture_on_commit_callbacks):
    engine.script("create_role", RetryableAwsError("role not visible yet", diagnosis="principal_not_visible"))
    request = approved_request(endpoint_identifier="orders")
    run(request.pk, capture=django_capture_on_commit_callbacks)

    with pytest.raises(RetryableAwsError):
        run(request.pk, capture=django_capture_on_commit_callbacks)

    request.refresh_from_db()
    step = steps_of(request)["create_role"]
    assert (step.status, step.attempts) == ("pending", 1)
    assert "role not visible yet" in step.error
    assert request.state == AccessRequest.State.PROVISIONING


def test_retryable_error_on_the_last_attempt_fails_with_its_diagnosis(engine, enqueued, django_capture_on_commit_callbacks):
    engine.script(
        "grant_key_policy",
        RetryableAwsError("invalid principals", diagnosis="principal_not_visible", aws_request_ids=["r-1"]),
    )
    request = approved_request(endpoint_identifier="orders")
    for _ in range(3):
        run(request.pk, capture=django_capture_on_commit_callbacks)

    run(request.pk, final_attempt=True, capture=django_capture_on_commit_callbacks)

    request.refresh_from_db()
    step = steps_of(request)["grant_key_policy"]
    assert (step.status, step.diagnosis, step.aws_request_ids) == ("failed", "principal_not_visible", ["r-1"])
    assert (request.state, request.diagnosis) == ("failed", "principal_not_visible")
    assert steps_of(request)["create_endpoint"].status == "pending"
    failed = AuditEvent.objects.get(request=request, action="request.failed")
    assert failed.details["step"] == "grant_key_policy" and failed.details["error"] == "invalid principals"


def test_permanent_error_fails_the_request_at_once(engine, enqueued, django_capture_on_commit_callbacks):
    engine.script(
        "create_role", PermanentAwsError("iam:CreateRole denied", diagnosis="provisioner_access_denied")
    )
    request = approved_request(endpoint_identifier="orders")

    ran = run_until_idle(request.pk, django_capture_on_commit_callbacks)

    request.refresh_from_db()
    assert ran == ["preflight", "create_role"]
    step = steps_of(request)["create_role"]
    assert (step.status, step.attempts, step.error) == ("failed", 1, "iam:CreateRole denied")
    assert (request.state, request.diagnosis) == ("failed", "provisioner_access_denied")
    assert actions(request)[-1] == "request.failed"


def test_a_crash_in_a_step_fails_it_instead_of_leaving_it_running(engine, enqueued, django_capture_on_commit_callbacks):
    engine.script("create_role", KeyError("RoleId"))
    request = approved_request(endpoint_identifier="orders")

    run_until_idle(request.pk, django_capture_on_commit_callbacks)

    step = steps_of(request)["create_role"]
    assert step.status == "failed" and "KeyError" in step.error


def test_failed_preflight_fails_the_request_with_its_report(engine, enqueued, django_capture_on_commit_callbacks):
    engine.script(
        "preflight", preflight_report(ok=False, diagnosis="aws_managed_key", message="the secret uses aws/secretsmanager")
    )
    request = approved_request(endpoint_identifier="orders")

    ran = run_until_idle(request.pk, django_capture_on_commit_callbacks)

    request.refresh_from_db()
    assert ran == ["preflight"]
    assert (request.state, request.diagnosis, request.preflight_status) == ("failed", "aws_managed_key", "failed")
    assert request.preflight["ok"] is False
    step = steps_of(request)["preflight"]
    assert (step.status, step.diagnosis, step.error) == ("failed", "aws_managed_key", "the secret uses aws/secretsmanager")
    assert engine.names_called() == ["preflight"]


def test_stale_task_for_a_cancelled_request_does_nothing(engine, enqueued, django_capture_on_commit_callbacks):
    request = approved_request(endpoint_identifier="orders")
    AccessRequest.objects.filter(pk=request.pk).update(state=AccessRequest.State.CANCELLED)

    assert run(request.pk, capture=django_capture_on_commit_callbacks) is None
    assert engine.calls == []


def test_task_for_a_deleted_request_does_nothing(engine, enqueued, django_capture_on_commit_callbacks):
    assert run(987654, capture=django_capture_on_commit_callbacks) is None


def test_revoke_runs_backwards_and_ends_revoked(engine, enqueued, django_capture_on_commit_callbacks):
    request = request_row(endpoint_identifier="orders", state=AccessRequest.State.REVOKING)
    with django_capture_on_commit_callbacks(execute=True):
        schedule_revoke(request)

    ran = run_until_idle(request.pk, django_capture_on_commit_callbacks, phase=REVOKE)

    request.refresh_from_db()
    assert ran == list(table.names(REVOKE))
    assert request.state == AccessRequest.State.REVOKED
    assert actions(request) == [f"aws.{name}" for name in table.names(REVOKE)] + ["request.revoked"]


def test_failed_revoke_leaves_the_request_failed_for_another_revoke(engine, enqueued, django_capture_on_commit_callbacks):
    engine.script("revoke_key_policy", PermanentAwsError("kms:PutKeyPolicy denied", diagnosis="provisioner_access_denied"))
    request = request_row(endpoint_identifier="orders", state=AccessRequest.State.REVOKING)
    schedule_revoke(request)

    run_until_idle(request.pk, django_capture_on_commit_callbacks, phase=REVOKE)

    request.refresh_from_db()
    assert (request.state, request.diagnosis) == ("failed", "provisioner_access_denied")
    assert steps_of(request, REVOKE)["delete_endpoint"].status == "succeeded"
    assert steps_of(request, REVOKE)["revoke_key_policy"].status == "failed"
