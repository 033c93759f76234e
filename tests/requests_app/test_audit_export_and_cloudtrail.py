"""Streaming the audit trail to a SIEM, and finding each AWS call of a grant in CloudTrail.

A grant is carried out against the runbook's world in moto; the export is read
as a collector would, resuming from its cursor.
"""
from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from requests_app.workflow import runner
from requests_app.models import AccessRequest, AuditEvent, RequestState
from requests_app.services import access_request_approve, access_request_cancel, access_request_submit
from tests.aws_world import DATALAKE_ID, REMOTE_ID
from tests.factories import UserFactory

URL = "/api/v1/audit-events/export/"


@pytest.fixture
def granted(cast, portal_aws, enqueued, django_capture_on_commit_callbacks) -> AccessRequest:
    request = access_request_submit(
        requester=cast.requester, datalake_account_id=DATALAKE_ID, secret_arn=portal_aws.secret_arn, engine="mysql",
        endpoint_identifier="source-db-mysql", justification="Replicate orders into the lake.",
        replication_instance_arn=portal_aws.replication_instance_arn,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash)
    while True:
        with django_capture_on_commit_callbacks(execute=True):
            if runner.run_step(request.pk, "grant") is None:
                break
    request = AccessRequest.objects.get(pk=request.pk)
    assert request.state == RequestState.ACTIVE, request.diagnosis
    return request


def _export(client: APIClient, **params) -> tuple[list[dict], dict]:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/jsonl")
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert lines[-1]["type"] == "end"
    return lines[:-1], lines[-1]


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_each_aws_write_names_where_cloudtrail_records_it(granted):
    role = AuditEvent.objects.get(request=granted, action="aws.create_role")
    calls = role.details["aws_calls"]
    assert [call["request_id"] for call in calls] == role.details["aws_request_ids"]
    assert {call["event_source"] for call in calls} == {"iam.amazonaws.com"}
    assert "CreateRole" in [call["event_name"] for call in calls]
    assert {call["region"] for call in calls} == {"us-east-1"}  # IAM's events live there
    key = AuditEvent.objects.get(request=granted, action="aws.grant_key_policy")
    assert {call["event_source"] for call in key.details["aws_calls"]} == {"kms.amazonaws.com"}
    assert "PutKeyPolicy" in [call["event_name"] for call in key.details["aws_calls"]]
    assert {call["region"] for call in key.details["aws_calls"]} == {"eu-west-1"}


def test_the_export_streams_every_event_with_its_chain_link_and_cloudtrail_hints(granted, cast):
    events, end = _export(_client(cast.staff))
    stored = list(AuditEvent.objects.order_by("id"))
    assert [e["id"] for e in events] == [e.pk for e in stored]
    assert [(e["hash"], e["prev_hash"], e["key_id"]) for e in events] == [(e.hash, e.prev_hash, e.key_id) for e in stored]
    assert {e["key_id"] for e in events} == {"test-1"}
    assert end == {"type": "end", "next_cursor": str(stored[-1].pk), "more": False, "count": len(stored)}

    role = next(e for e in events if e["action"] == "aws.create_role")
    create = next(h for h in role["cloudtrail"] if h["event_name"] == "CreateRole")
    assert create["event_source"] == "iam.amazonaws.com"
    assert create["account"] == DATALAKE_ID and create["region"] == "us-east-1"
    assert create["request_id"] in role["details"]["aws_request_ids"]
    assert create["event_time"] == role["created_at"]
    secret = next(e for e in events if e["action"] == "aws.grant_secret_policy")
    assert {h["account"] for h in secret["cloudtrail"]} == {REMOTE_ID}
    assert {h["event_source"] for h in secret["cloudtrail"]} == {"secretsmanager.amazonaws.com"}


def test_a_collector_resumes_from_its_cursor_and_misses_nothing(cast, enqueued):
    for _ in range(5):
        access_request_cancel(request_id=cast.request().pk, user=cast.requester)
    client = _client(cast.staff)
    first, end = _export(client, limit=2)
    assert (len(first), end["more"], end["next_cursor"]) == (2, True, first[-1]["cursor"])
    rest, end = _export(client, since=end["next_cursor"])
    assert [e["id"] for e in first + rest] == list(AuditEvent.objects.order_by("id").values_list("id", flat=True))
    assert end["more"] is False
    # Nothing new: an empty page that keeps the cursor.
    empty, again = _export(client, since=end["next_cursor"])
    assert (empty, again["next_cursor"], again["count"]) == ([], end["next_cursor"], 0)
    # New events come after it.
    access_request_cancel(request_id=cast.request().pk, user=cast.requester)
    newer, _ = _export(client, since=end["next_cursor"])
    assert [e["action"] for e in newer] == ["request.cancelled"]
    # A line cut short: resume from the cursor of the last complete line.
    middle, _ = _export(client, since=first[0]["cursor"], limit=1)
    assert middle[0]["id"] == first[1]["id"]


def test_the_export_is_scoped_like_the_other_audit_routes(cast, enqueued):
    mine = cast.request()
    access_request_cancel(request_id=mine.pk, user=cast.requester)
    other = UserFactory(username="stranger")
    events, _ = _export(_client(cast.requester))
    assert {e["request"] for e in events} == {mine.pk}
    assert _export(_client(other))[0] == []
    assert APIClient().get(URL).status_code == 401


@pytest.mark.parametrize("params", [{"since": "-1"}, {"since": "abc"}, {"since": "99999999999999999999"}, {"limit": 0}])
def test_a_bad_cursor_or_limit_is_a_400(cast, params):
    response = _client(cast.staff).get(URL, params)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")


def test_the_request_page_shows_the_cloudtrail_hints(granted, client, cast):
    client.force_login(cast.requester)
    page = client.get(reverse("web:request_detail", args=[granted.pk])).content.decode()
    role = AuditEvent.objects.get(request=granted, action="aws.create_role")
    create = next(c for c in role.details["aws_calls"] if c["event_name"] == "CreateRole")
    assert (
        f"iam.amazonaws.com CreateRole · request id {create['request_id']} · account {DATALAKE_ID} · us-east-1" in page
    )


def test_the_schema_documents_the_export_and_its_cursor(client, cast):
    client.force_login(cast.staff)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    if schema.status_code != 200:
        pytest.skip("schema served elsewhere")
    operation = json.loads(schema.content)["paths"]["/api/v1/audit-events/export/"]["get"]
    assert "next_cursor" in operation["description"]
    assert "application/jsonl" in operation["responses"]["200"]["content"]
    assert {p["name"] for p in operation["parameters"]} >= {"since", "limit"}
