"""The Celery tasks' retry policy, run in-process (retries happen at once)."""
from __future__ import annotations

import pytest

from provisioning.errors import PermanentAwsError, RetryableAwsError
from requests_app import runner, tasks, workflow
from requests_app.models import AccessRequest
from tests.requests_app.fake_engine import FakeEngine
from tests.requests_app.rows import approved_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine(monkeypatch):
    fake = FakeEngine()
    monkeypatch.setattr(runner, "engine_step", fake.step)
    monkeypatch.setattr(runner, "grant_clients_for", lambda spec: object())
    monkeypatch.setattr(workflow, "enqueue_next_step", lambda request_id, phase: None)
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


def test_retry_policy_comes_from_settings(settings):
    task = tasks.run_step
    assert task.name == "provisioning.run_step"
    assert task.acks_late is True
    assert task.autoretry_for == (RetryableAwsError,)
    assert task.max_retries == settings.PROVISIONING_RETRY_MAX_RETRIES
    assert task.retry_backoff_max == settings.PROVISIONING_RETRY_BACKOFF_MAX
    assert settings.CELERY_BEAT_SCHEDULE["provisioning-sweep"]["task"] == tasks.sweep.name == "provisioning.sweep"
