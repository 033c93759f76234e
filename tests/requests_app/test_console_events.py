"""The quickstart's console lines, read from the audit trail."""
import pytest
from django.db import transaction

from requests_app.audit import record_event
from requests_app.management.console_events import EventFeed
from requests_app.models import AccessRequest
from tests.requests_app.rows import request_row, user

pytestmark = pytest.mark.django_db

BASE = "http://127.0.0.1:8000"


def record(request, action, **fields):
    with transaction.atomic():
        record_event(action=action, request=request, **fields)


def said(lines):
    return [line.split("  ", 1)[1] for line in lines]


def test_the_feed_says_what_happened_to_a_request_once_each_with_its_page():
    before = request_row(endpoint_identifier="before-the-feed")
    record(before, "request.submitted", actor=user("dana.requester"))
    feed = EventFeed(base_url=BASE)
    request = request_row(endpoint_identifier="orders-mysql", engine="mysql",
                          preflight_status=AccessRequest.PreflightStatus.PASSED)  # fmt: skip
    record(request, "request.submitted", actor=user("dana.requester"))
    record(request, "decision.approve", actor=user("omar.approver"))
    record(request, "request.approved", actor=user("omar.approver"))
    # Two AWS writes of one step (a revoke cleaning an older key too) are one line.
    record(request, "aws.create_role", details={"step": "create_role"})
    record(request, "aws.create_role", details={"step": "create_role"})
    # Its statement written by another grant of its multi-grant request, before its own step runs.
    record(request, "aws.grant_secret_policy", details={"step": "grant_secret_policy", "written_with_request": 7})
    AccessRequest.objects.filter(pk=request.pk).update(diagnosis="access_denied")
    record(request, "request.failed", details={"diagnosis": "access_denied"})

    lines = feed.new_lines()
    page = f"{BASE}/requests/{request.pk}/"
    assert said(lines) == [
        f"request #{request.pk} filed by dana.requester (mysql orders-mysql, preflight passed)   {page}",
        f"request #{request.pk} approved by omar.approver   {page}",
        f"request #{request.pk} step create_role done   {page}",
        f"request #{request.pk} statement written by request #7's grant_secret_policy   {page}",
        f"request #{request.pk} FAILED (access_denied)   {page}",
    ]
    # Read once: nothing new, nothing said again.
    assert feed.new_lines() == []
