"""The periodic lifecycle tasks: scheduled by beat under their names, and their error handling."""
from __future__ import annotations

import pytest

from portal.celery import app
from provisioning.errors import PermanentAwsError, RetryableAwsError
from requests_app.workflow import tasks
from requests_app.models import AccessRequest, RequestState

pytestmark = pytest.mark.django_db


def test_every_beat_entry_runs_a_registered_task(settings):
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"provisioning.sweep", "provisioning.remind_expiring", "provisioning.check_drift"} <= scheduled
    app.loader.import_default_modules()
    assert scheduled <= set(app.tasks)


def test_a_drift_check_that_cannot_read_aws_keeps_the_previous_report(cast, monkeypatch):
    previous = {"drifted": True, "kinds": ["endpoint_missing"], "findings": []}
    request = cast.request(state=RequestState.ACTIVE, drift=previous)

    def denied(*, request_id):
        raise PermanentAwsError("not allowed: kms:GetKeyPolicy", diagnosis="provisioner_access_denied")

    monkeypatch.setattr(tasks.drift, "grant_check_drift", denied)
    assert tasks.check_grant_drift.apply(args=[request.pk]).get() is None
    assert AccessRequest.objects.get(pk=request.pk).drift == previous


def test_a_drift_check_hitting_throttling_is_retried(cast, monkeypatch):
    request = cast.request(state=RequestState.ACTIVE)
    answers = [RetryableAwsError("throttled", diagnosis="aws_unavailable")] * 2

    def flaky(*, request_id):
        if answers:
            raise answers.pop()
        return AccessRequest.objects.get(pk=request_id)

    monkeypatch.setattr(tasks.drift, "grant_check_drift", flaky)
    tasks.check_grant_drift.apply(args=[request.pk])
    assert answers == []
