"""The Celery tasks' retry policy, run in-process (retries happen at once)."""
from __future__ import annotations

import pytest

from provisioning.errors import PermanentAwsError, RetryableAwsError
from provisioning.steps import table
from requests_app.workflow import runner, scheduling, tasks
from requests_app.models import AccessRequest
from tests.requests_app.fake_engine import FakeEngine
from tests.requests_app.rows import approved_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine(monkeypatch):
    fake = FakeEngine()
    monkeypatch.setattr(runner, "engine_step", fake.step)
    monkeypatch.setattr(runner, "grant_clients_for", lambda spec, **_: object())
    fake.enqueued = []
    monkeypatch.setattr(scheduling, "enqueue_next_step", lambda request_id, phase: fake.enqueued.append((request_id, phase)))
    return fake


def not_visible():
    return RetryableAwsError("invalid principal", diagnosis="principal_not_visible")


def test_retryable_errors_are_retried_until_the_step_succeeds(engine):
    engine.script("preflight", not_visible(), not_visible(), None)
    request = approved_request(endpoint_identifier="orders")

    tasks.run_step.apply(args=[request.pk, "grant"])

    step = request.steps.get(name="preflight")
    assert (step.status, step.attempts) == ("succeeded", 3)


def test_retries_stop_at_the_budget_and_the_step_fails_with_the_diagnosis(engine):
    engine.script("preflight", not_visible())
    request = approved_request(endpoint_identifier="orders")

    tasks.run_step.apply(args=[request.pk, "grant"])

    request.refresh_from_db()
    step = request.steps.get(name="preflight")
    assert (step.status, step.diagnosis) == ("failed", "principal_not_visible")
    assert step.attempts == tasks.run_step.max_retries + 1
    assert request.state == AccessRequest.State.FAILED


def test_permanent_error_is_not_retried(engine):
    engine.script("preflight", PermanentAwsError("secret not found", diagnosis="secret_not_found"))
    request = approved_request(endpoint_identifier="orders")

    tasks.run_step.apply(args=[request.pk, "grant"])

    step = request.steps.get(name="preflight")
    assert (step.status, step.attempts, step.diagnosis) == ("failed", 1, "secret_not_found")


def test_one_task_runs_every_step_of_the_grant_back_to_back(engine, django_capture_on_commit_callbacks):
    request = approved_request(endpoint_identifier="orders")

    with django_capture_on_commit_callbacks(execute=True):
        ran = tasks.run_step.apply(args=[request.pk, "grant"]).get()

    request.refresh_from_db()
    assert ran == list(table.names("grant"))
    assert request.state == AccessRequest.State.ACTIVE
    assert [(step.name, step.status, step.attempts) for step in request.steps.order_by("position")] == [
        (name, "succeeded", 1) for name in table.names("grant")
    ]
    assert engine.enqueued == []  # no trip through the broker between steps


def test_a_retried_task_runs_the_step_it_retried_and_hands_the_rest_to_a_new_task(
    engine, django_capture_on_commit_callbacks
):
    # So that every step starts with the whole retry budget.
    engine.script("grant_secret_policy", not_visible(), None)
    request = approved_request(endpoint_identifier="orders")

    with django_capture_on_commit_callbacks(execute=True):
        tasks.run_step.apply(args=[request.pk, "grant"])

    statuses = dict(request.steps.values_list("name", "status"))
    assert statuses == {
        "preflight": "succeeded", "create_role": "succeeded", "grant_secret_policy": "succeeded",
        "grant_key_policy": "pending", "create_endpoint": "pending", "verify": "pending",
    }
    assert request.steps.get(name="grant_secret_policy").attempts == 2
    assert engine.enqueued == [(request.pk, "grant")]

    ran = tasks.run_step.apply(args=[request.pk, "grant"]).get()

    assert ran == ["grant_key_policy", "create_endpoint", "verify"]
    request.refresh_from_db()
    assert request.state == AccessRequest.State.ACTIVE


def test_a_permanent_failure_ends_the_task_and_runs_no_later_step(engine, django_capture_on_commit_callbacks):
    engine.script("grant_key_policy", PermanentAwsError("access denied", diagnosis="provisioner_access_denied"))
    request = approved_request(endpoint_identifier="orders")

    with django_capture_on_commit_callbacks(execute=True):
        ran = tasks.run_step.apply(args=[request.pk, "grant"]).get()

    assert ran == ["preflight", "create_role", "grant_secret_policy", "grant_key_policy"]
    assert [name for name, _ in engine.calls][-1] == "grant_key_policy"
    request.refresh_from_db()
    assert request.state == AccessRequest.State.FAILED
    assert engine.enqueued == []


def test_retry_policy_comes_from_settings(settings):
    task = tasks.run_step
    assert task.name == "provisioning.run_step"
    assert task.acks_late is True
    assert task.autoretry_for == (RetryableAwsError,)
    assert task.max_retries == settings.PROVISIONING_RETRY_MAX_RETRIES
    assert task.retry_backoff_max == settings.PROVISIONING_RETRY_BACKOFF_MAX
    assert settings.CELERY_BEAT_SCHEDULE["provisioning-sweep"]["task"] == tasks.sweep.name == "provisioning.sweep"


def test_broker_hands_back_a_dead_workers_messages_in_minutes_not_an_hour(settings):
    """acks late and reject on worker lost keep a killed worker's message; one
    message reserved per pool process at a time; Redis returns an unacknowledged
    message after minutes (kombu's default is an hour), yet never before the
    longest retry countdown, so a delayed retry is not handed out twice."""
    from portal.celery import app

    assert app.conf.task_acks_late is True and app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        visibility = app.conf.broker_transport_options["visibility_timeout"]
        assert settings.PROVISIONING_RETRY_BACKOFF_MAX < visibility <= 600
    sweep = settings.CELERY_BEAT_SCHEDULE["provisioning-sweep"]
    assert sweep["schedule"] == settings.PROVISIONING_SWEEP_INTERVAL_SECONDS <= settings.PROVISIONING_STEP_LEASE_SECONDS / 2
