"""Rate limits: a per-user limit on the API, and a stricter one, shared by the API and
the pages, on every route that makes the portal call AWS. Over it: 429 with
``Retry-After``, and no AWS call is made."""
from __future__ import annotations

import pytest
from botocore.client import BaseClient
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from requests_app.models import AccessRequest
from tests.requests_app.page_rows import make_request
from tests.security.actions import FILE_BODY

pytestmark = pytest.mark.django_db

API_FILE = "/api/v1/requests/"


@pytest.fixture(autouse=True)
def fresh_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def aws_calls(monkeypatch) -> list[str]:
    """Every AWS operation the portal calls, in order."""
    calls: list[str] = []
    original = BaseClient._make_api_call

    def counted(client, operation_name, api_params):
        calls.append(operation_name)
        return original(client, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counted)
    return calls


def _client(people, role) -> Client:
    client = Client()
    client.force_login(people[role])
    return client


def _file_over_the_api(client: Client, number: int):
    body = {**FILE_BODY, "endpoint_identifier": f"rate-limited-{number}"}
    return client.post(API_FILE, body, content_type="application/json")


def _assert_refused(response):
    assert response.status_code == 429, response.content
    assert int(response["Retry-After"]) >= 1


def test_filing_over_the_api_stops_at_the_aws_rate_without_calling_aws(people, site, settings, fake_aws, aws_calls):
    settings.PORTAL_AWS_RATE = "2/min"
    client = _client(people, "requester")
    assert [_file_over_the_api(client, n).status_code for n in (1, 2)] == [201, 201]
    assert aws_calls  # the filings read AWS
    calls_before, requests_before = len(aws_calls), AccessRequest.objects.count()

    refused = _file_over_the_api(client, 3)

    _assert_refused(refused)
    assert refused.json()["code"] == "throttled"
    assert len(aws_calls) == calls_before and AccessRequest.objects.count() == requests_before
    # The limit is per user: another requester still files.
    site["datalake"].requesters.add(people["other_requester"])
    assert _file_over_the_api(_client(people, "other_requester"), 4).status_code == 201
    # Reading is not an AWS call: the requester still sees their requests.
    assert client.get(API_FILE).status_code == 200


def test_the_pages_draw_from_the_same_budget(people, site, settings, fake_aws, aws_calls):
    settings.PORTAL_AWS_RATE = "2/min"
    requester, approver = _client(people, "requester"), _client(people, "approver")
    request = make_request(people["requester"], site)
    refresh = reverse("web:request_action", args=[request.pk, "refresh_preflight"])
    assert _file_over_the_api(requester, 1).status_code == 201
    assert requester.post(refresh).status_code == 302
    calls_before = len(aws_calls)

    _assert_refused(requester.post(refresh))
    _assert_refused(requester.post(reverse("web:request_new"), {**FILE_BODY, "endpoint_type": "source"}))
    assert len(aws_calls) == calls_before

    # The approver has a budget of their own: two reads of the live policies, then 429.
    policies = reverse("web:request_policies", args=[request.pk])
    assert [approver.get(policies).status_code for _ in range(2)] == [200, 200]
    calls_before = len(aws_calls)
    _assert_refused(approver.get(policies))
    assert len(aws_calls) == calls_before


def test_repair_over_the_api_is_rate_limited(people, site, settings):
    settings.PORTAL_AWS_RATE = "1/min"
    request = make_request(people["requester"], site, state=AccessRequest.State.ACTIVE)
    # Drift in the DataLake account: the requester repairs it directly.
    drift = {"drifted": True, "kinds": ["endpoint_missing"], "findings": [
        {"kind": "endpoint_missing", "resource": request.endpoint_identifier, "message": "The endpoint is gone."}]}
    AccessRequest.objects.filter(pk=request.pk).update(drift=drift)
    client = _client(people, "requester")
    url = f"/api/v1/requests/{request.pk}/repair/"
    assert client.post(url, {}, content_type="application/json").status_code == 200
    AccessRequest.objects.filter(pk=request.pk).update(state=AccessRequest.State.ACTIVE, drift=drift)
    _assert_refused(client.post(url, {}, content_type="application/json"))
    request.refresh_from_db()
    assert request.state == AccessRequest.State.ACTIVE


def test_every_api_call_counts_against_the_user_rate(people, site, settings):
    settings.PORTAL_API_RATE = "3/min"
    client = _client(people, "approver")
    assert [client.get("/api/v1/accounts/").status_code for _ in range(3)] == [200, 200, 200]
    _assert_refused(client.get("/api/v1/requests/"))
    assert _client(people, "staff").get("/api/v1/requests/").status_code == 200


def test_with_the_cache_down_calls_go_through_and_it_is_logged(people, site, settings, caplog):
    settings.PORTAL_API_RATE = "1/min"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    client = _client(people, "approver")
    assert [client.get("/api/v1/accounts/").status_code for _ in range(2)] == [200, 200]
    assert "the cache could not be reached" in caplog.text


def test_a_multi_grant_request_draws_one_per_grant_and_at_most_the_whole_budget(people, site, settings, fake_aws):
    settings.PORTAL_AWS_RATE = "5/min"
    client = _client(people, "requester")
    grant = {key: FILE_BODY[key] for key in ("secret_arn", "engine")}
    shared = {key: FILE_BODY[key] for key in ("datalake_account", "justification")}

    def file_set(prefix: str, count: int):
        grants = [{**grant, "endpoint_identifier": f"{prefix}-{n}"} for n in range(count)]
        return client.post("/api/v1/request-sets/", {**shared, "grants": grants}, content_type="application/json")

    assert file_set("three", 3).status_code == 201
    # Three of five drawn: a set of three more is over the budget; two single requests are not.
    _assert_refused(file_set("again", 3))
    assert [_file_over_the_api(client, n).status_code for n in (1, 2)] == [201, 201]
    _assert_refused(_file_over_the_api(client, 3))
    # A set larger than the whole budget draws the whole budget, so it can be filed once the budget is full.
    cache.clear()
    assert file_set("large", 8).status_code == 201
    _assert_refused(_file_over_the_api(client, 4))
