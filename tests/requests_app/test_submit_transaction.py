"""Filing and re-running preflight hold no database transaction while AWS answers.

An open transaction across the AWS round trip holds the row locks it took
(and on SQLite the database's one write lock) for as long as AWS takes.
Every AWS call the portal makes goes through botocore's
``BaseClient._make_api_call``; the tests look there whether a transaction is
open. They run with real commits (``transactional_db``), so the test itself
opens none.
"""
from __future__ import annotations

import pytest
from botocore.client import BaseClient
from django.db import connection

from requests_app.errors import NotAllowed
from requests_app.models import AccessRequest, AuditEvent
from requests_app.services import access_request_refresh_preflight, access_request_submit
from tests.aws_world import DATALAKE_ID


@pytest.fixture
def aws_calls(monkeypatch) -> list[tuple[str, bool]]:
    """``(operation, a transaction was open)`` for every AWS call."""
    seen: list[tuple[str, bool]] = []
    original = BaseClient._make_api_call

    def watched(client, operation_name, api_params):
        seen.append((operation_name, connection.in_atomic_block))
        return original(client, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", watched)
    return seen


def _file(cast, world, **overrides) -> AccessRequest:
    fields = {
        "requester": cast.requester,
        "datalake_account_id": DATALAKE_ID,
        "secret_arn": world.secret_arn,
        "engine": "mysql",
        "endpoint_identifier": "source-db-mysql",
        "justification": "Replicate orders into the lake.",
    }
    return access_request_submit(**{**fields, **overrides})


def test_filing_calls_aws_with_no_transaction_open(transactional_db, cast, portal_aws, aws_calls):
    request = _file(cast, portal_aws)

    assert request.preflight_status == "passed" and request.resolved_kms_key_arn == portal_aws.key_arn
    operations = [name for name, _ in aws_calls]
    assert "DescribeSecret" in operations and "GetKeyPolicy" in operations
    assert [name for name, in_transaction in aws_calls if in_transaction] == []
    # The row, its plan and its audit event were still written together.
    event = AuditEvent.objects.get(request=request, action="request.submitted")
    assert event.details["plan_hash"] == request.plan_hash != ""


def test_re_running_preflight_calls_aws_with_no_transaction_open(transactional_db, cast, portal_aws, aws_calls):
    request = _file(cast, portal_aws)
    aws_calls.clear()

    access_request_refresh_preflight(request_id=request.pk, user=cast.approver)

    assert "DescribeSecret" in [name for name, _ in aws_calls]
    assert [name for name, in_transaction in aws_calls if in_transaction] == []
    assert AuditEvent.objects.filter(request=request, action="request.preflight_refreshed").count() == 1


def test_a_requester_removed_while_aws_answers_files_nothing(transactional_db, cast, portal_aws, monkeypatch):
    # The permission is checked again, in the transaction that writes, after AWS answered.
    from requests_app.services import submission

    original = submission._run_preflight

    def removed_meanwhile(request):
        outcome = original(request)
        cast.datalake.requesters.remove(cast.requester)
        return outcome

    monkeypatch.setattr(submission, "_run_preflight", removed_meanwhile)
    with pytest.raises(NotAllowed):
        _file(cast, portal_aws)
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.submitted").exists()
