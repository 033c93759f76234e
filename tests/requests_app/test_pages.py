"""The server-rendered pages, through Django's test client.

What a person relies on: each page shows what they may see and nothing else,
costs the same number of queries for 3 rows as for 30, escapes what users
typed, and refuses forms posted without the CSRF token.
"""
from __future__ import annotations

import json
import re

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from requests_app.audit import record_event
from requests_app.models import AccessRequest, Decision, ProvisioningStep
from tests.requests_app.page_rows import (
    SECRET_ARN,
    make_accounts,
    make_request,
    make_users,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    users = make_users()
    accounts = make_accounts(users)
    return users, accounts


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured)


def _grow(site, count: int, *, state=AccessRequest.State.PENDING_APPROVAL):
    users, accounts = site
    for _ in range(count):
        make_request(users["requester"], accounts, state=state)


@pytest.mark.parametrize(
    ("url_name", "who", "state"),
    [
        ("web:dashboard", "requester", AccessRequest.State.PENDING_APPROVAL),
        ("web:request_list", "approver", AccessRequest.State.ACTIVE),
        ("web:approval_queue", "approver", AccessRequest.State.PENDING_APPROVAL),
        ("web:audit_log", "approver", AccessRequest.State.PENDING_APPROVAL),
        ("web:accounts", "requester", AccessRequest.State.PENDING_APPROVAL),
    ],
)
def test_list_pages_cost_the_same_queries_for_3_and_30_rows(
    site, django_assert_max_num_queries, url_name, who, state
):
    users, _ = site
    client = _client(users[who])
    url = reverse(url_name)
    _grow(site, 3, state=state)
    at_three = _queries(client, url)
    _grow(site, 27, state=state)
    with django_assert_max_num_queries(at_three):
        response = client.get(url)
    assert response.status_code == 200


def test_the_detail_page_costs_the_same_queries_for_3_and_30_steps_decisions_and_events(
    site, django_assert_max_num_queries
):
    users, accounts = site
    client = _client(users["approver"])
    request = make_request(users["requester"], accounts, state=AccessRequest.State.ACTIVE, with_steps=True)
    url = reverse("web:request_detail", args=[request.pk])
    live_url = reverse("web:request_live", args=[request.pk])
    at_three = _queries(client, url)
    live_at_three = _queries(client, live_url)
    with transaction.atomic():
        for number in range(27):
            record_event(action="request.noted", actor=users["approver"], request=request, details={"n": number})
        for number in range(27):
            Decision.objects.create(
                request=request, approver=users["second_approver"] if number % 2 else users["approver"],
                outcome="approve", comment=f"ok {number}", plan_hash=f"{number:064d}",
            )
    with django_assert_max_num_queries(at_three):
        assert client.get(url).status_code == 200
    with django_assert_max_num_queries(live_at_three):
        assert client.get(live_url).status_code == 200


def test_a_justification_with_a_script_tag_is_shown_as_text_everywhere(site):
    users, accounts = site
    evil = '<script>alert("owned")</script><img src=x onerror=alert(1)>'
    request = make_request(users["requester"], accounts, justification=evil, endpoint_identifier="evil-endpoint")
    with transaction.atomic():
        record_event(action="request.commented", actor=users["approver"], request=request, details={"comment": evil})
    Decision.objects.create(request=request, approver=users["approver"], outcome="reject", comment=evil,
                            plan_hash=request.plan_hash)
    client = _client(users["approver"])
    for url in (
        reverse("web:request_detail", args=[request.pk]),
        reverse("web:request_live", args=[request.pk]),
        reverse("web:audit_log"),
    ):
        body = client.get(url).content.decode()
        assert "<script>alert" not in body and "<img src=x" not in body, url
    detail = client.get(reverse("web:request_detail", args=[request.pk])).content.decode()
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in detail


def test_every_form_refuses_a_post_without_the_csrf_token(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    approver = Client(enforce_csrf_checks=True)
    approver.force_login(users["approver"])
    requester = Client(enforce_csrf_checks=True)
    requester.force_login(users["requester"])
    posts = [
        (approver, reverse("web:request_action", args=[request.pk, "approve"]), {"comment": "ok"}),
        (approver, reverse("web:request_action", args=[request.pk, "reject"]), {"comment": "no"}),
        (requester, reverse("web:request_action", args=[request.pk, "cancel"]), {}),
        (requester, reverse("web:request_action", args=[request.pk, "revoke"]), {}),
        (requester, reverse("web:request_action", args=[request.pk, "retry"]), {}),
        (requester, reverse("web:request_new"), {"datalake_account": "111111111111"}),
        (requester, reverse("web:request_validate"), {"secret_arn": "x"}),
        (requester, reverse("logout"), {}),
    ]
    for client, url, data in posts:
        assert client.post(url, data).status_code == 403, url
    request.refresh_from_db()
    assert request.state == AccessRequest.State.PENDING_APPROVAL
    assert not request.decisions.exists()
    # The login form is protected too.
    assert Client(enforce_csrf_checks=True).post(reverse("login"), {"username": "x", "password": "y"}).status_code == 403


def test_the_same_forms_work_with_the_token_the_page_gave(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["requester"])
    page = client.get(reverse("web:request_detail", args=[request.pk]))
    token = page.cookies["csrftoken"].value
    response = client.post(reverse("web:request_action", args=[request.pk, "cancel"]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == AccessRequest.State.CANCELLED


def test_buttons_follow_the_permission_rules(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)

    def buttons(user) -> set[str]:
        body = _client(user).get(reverse("web:request_detail", args=[request.pk])).content.decode()
        return {action for action in ("approve", "reject", "cancel", "revoke", "retry", "refresh_preflight") if f'value="{action}"' in body}

    assert buttons(users["requester"]) == {"cancel", "refresh_preflight"}
    assert buttons(users["approver"]) == {"approve", "reject", "refresh_preflight"}
    assert buttons(users["staff"]) == set()
    request.state = AccessRequest.State.ACTIVE
    request.save(update_fields=["state"])
    assert buttons(users["requester"]) == {"revoke"}
    assert buttons(users["approver"]) == {"revoke"}


def test_a_request_the_user_may_not_see_is_not_found(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    client = _client(users["outsider"])
    for name in ("web:request_detail", "web:request_live", "web:request_policies"):
        assert client.get(reverse(name, args=[request.pk])).status_code == 404
    assert client.post(reverse("web:request_action", args=[request.pk, "approve"])).status_code == 404
    assert f"#{request.pk}" not in client.get(reverse("web:request_list")).content.decode()


def test_the_form_offers_only_my_datalake_accounts(site):
    users, accounts = site
    body = _client(users["requester"]).get(reverse("web:request_new")).content.decode()
    assert accounts["datalake"].account_id in body
    assert accounts["other_datalake"].account_id not in body
    assert accounts["remote"].account_id not in body


def test_inline_validation_answers_with_the_api_messages_for_the_field_that_changed(site):
    from requests_app.errors import ValidationFailed
    from requests_app.validation import validate_request_input

    users, _ = site
    client = _client(users["requester"])
    data = {"datalake_account": "111111111111", "secret_arn": "arn:aws:secretsmanager:eu-west-1:2222:secret:x"}
    response = client.post(reverse("web:request_validate"), data, HTTP_HX_TRIGGER_NAME="secret_arn")
    with pytest.raises(ValidationFailed) as expected:
        validate_request_input(
            datalake_account_id="111111111111", secret_arn=data["secret_arn"], engine="",
            endpoint_identifier="", justification="",
        )
    body = response.content.decode()
    assert expected.value.errors["secret_arn"]
    for message in expected.value.errors["secret_arn"]:
        assert _escaped(message) in body
    # A field that is fine answers with nothing at all (whitespace would still
    # mark it); the other filled fields get their current messages out of band.
    ok = client.post(reverse("web:request_validate"), data, HTTP_HX_TRIGGER_NAME="datalake_account")
    own, _, rest = ok.content.decode().partition('<div id="errors_')
    assert own == ""
    assert rest.startswith('secret_arn" hx-swap-oob="innerHTML">')
    assert _escaped(expected.value.errors["secret_arn"][0]) in rest
    # Once the secret ARN is valid, the answer clears its message too.
    data["secret_arn"] = SECRET_ARN
    cleared = client.post(reverse("web:request_validate"), data, HTTP_HX_TRIGGER_NAME="datalake_account").content.decode()
    assert cleared == '<div id="errors_secret_arn" hx-swap-oob="innerHTML"></div>'


def test_submitting_the_form_with_errors_shows_them_next_to_the_fields(site):
    users, _ = site
    response = _client(users["requester"]).post(
        reverse("web:request_new"),
        {"datalake_account": "111111111111", "secret_arn": SECRET_ARN, "engine": "mysql",
         "endpoint_identifier": "1-bad--id-", "justification": ""},
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["endpoint_identifier"] and form.errors["justification"]
    body = response.content.decode()
    shown = re.search(r'id="errors_endpoint_identifier"[^>]*>(.*?)</div>', body, re.S).group(1)
    assert _escaped(form.errors["endpoint_identifier"][0]) in shown


def test_audit_exports_stream_csv_and_json_lines_with_the_filters(site):
    users, accounts = site
    first = make_request(users["requester"], accounts)
    make_request(users["requester"], accounts)
    client = _client(users["approver"])
    response = client.get(reverse("web:audit_export", args=["jsonl"]), {"request": first.pk})
    assert response.streaming
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert lines and {line["request_id"] for line in lines} == {first.pk}
    assert {line["key_id"] for line in lines} == {"test-1"}
    csv_response = client.get(reverse("web:audit_export", args=["csv"]), {"request": first.pk})
    rows = b"".join(csv_response.streaming_content).decode().splitlines()
    assert rows[0].startswith("id,created_at,actor_label")
    assert len(rows) == len(lines) + 1
    assert csv_response["Content-Disposition"].startswith("attachment;")


def test_the_outsider_exports_nothing_of_others(site):
    users, accounts = site
    make_request(users["requester"], accounts)
    response = _client(users["outsider"]).get(reverse("web:audit_export", args=["jsonl"]))
    assert b"".join(response.streaming_content) == b""


def test_the_live_part_polls_only_while_workers_run(site):
    users, accounts = site
    request = make_request(users["requester"], accounts, state=AccessRequest.State.PROVISIONING, with_steps=True)
    client = _client(users["requester"])
    url = reverse("web:request_live", args=[request.pk])
    assert 'hx-trigger="every 1s"' in client.get(url).content.decode()
    AccessRequest.objects.filter(pk=request.pk).update(state=AccessRequest.State.ACTIVE)
    body = client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' not in body
    # The requester never loads the Remote account's policies; an approver's final
    # answer reloads the policy diff once, as the workers recorded it.
    assert reverse("web:request_policies", args=[request.pk]) not in body
    approver_body = _client(users["approver"]).get(url).content.decode()
    assert reverse("web:request_policies", args=[request.pk]) in approver_body


def test_a_page_awaiting_approval_hears_nothing_until_the_state_moves(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    client = _client(users["requester"])
    url = reverse("web:request_live", args=[request.pk])
    page = client.get(reverse("web:request_detail", args=[request.pk])).content.decode()
    assert f'{url}?shown=pending_approval" hx-trigger="every 3s"' in page
    assert client.get(url, {"shown": "pending_approval"}).status_code == 204
    AccessRequest.objects.filter(pk=request.pk).update(state=AccessRequest.State.APPROVED)
    moved = client.get(url, {"shown": "pending_approval"})
    assert moved.status_code == 200 and 'hx-trigger="every 1s"' in moved.content.decode()
    # Someone who may not see the request learns nothing, not even "no change".
    assert _client(users["outsider"]).get(url, {"shown": "approved"}).status_code == 404


def test_steps_show_their_diagnosis_and_remediation(site):
    from provisioning.diagnoses import DIAGNOSES

    users, accounts = site
    request = make_request(users["requester"], accounts, state=AccessRequest.State.FAILED, with_steps=True)
    request.steps.filter(name="preflight").update(
        status=ProvisioningStep.Status.FAILED, error="KmsKeyId absent", diagnosis="aws_managed_key"
    )
    body = _client(users["requester"]).get(reverse("web:request_detail", args=[request.pk])).content.decode()
    assert _escaped(DIAGNOSES["aws_managed_key"].remediation) in body
    assert 'data-node="key" data-status="failed"' in body


def _escaped(text: str) -> str:
    from django.utils.html import escape

    return escape(text)


def test_the_portal_serves_its_own_stylesheet_and_htmx_without_debug(client, settings):
    assert settings.DEBUG is False
    css = client.get("/static/portal/portal.css")
    assert css.status_code == 200 and css["Content-Type"].startswith("text/css")
    htmx = client.get("/static/vendor/htmx/htmx.min.js")
    assert htmx.status_code == 200
    assert b"htmx.org 2.0.11" in b"".join(htmx.streaming_content if htmx.streaming else [htmx.content])[:300]


def test_the_audit_log_pages_by_cursor_through_every_event_once_and_back(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    with transaction.atomic():
        for number in range(120):
            record_event(action="request.commented", actor=users["approver"], request=request, details={"n": number})
    client = _client(users["approver"])
    url = reverse("web:audit_log") + f"?request={request.pk}"

    def ids_and_links(page_url):
        response = client.get(page_url)
        assert response.status_code == 200
        body = response.content.decode()
        ids = [int(n) for n in re.findall(r'<tr>\s*<td class="mono">(\d+)</td>', body)]
        links = dict(re.findall(r'href="([^"]+)">(← Newer|Older →)</a>', body))
        return ids, {label: href.replace("&amp;", "&") for href, label in links.items()}

    seen, pages, page_url = [], [], url
    while page_url:
        ids, links = ids_and_links(page_url)
        seen += ids
        pages.append((page_url, links))
        page_url = links.get("Older →")
    expected = list(request.audit_events.order_by("-id").values_list("id", flat=True))
    assert seen == expected and len(expected) > 100
    assert [len(ids_and_links(u)[0]) for u, _ in pages] == [50, 50, len(expected) - 100]
    assert "← Newer" not in pages[0][1]
    # Back from the last page to the one before it, with the filter kept.
    newer = pages[-1][1]["← Newer"]
    assert f"request={request.pk}" in newer
    assert ids_and_links(newer)[0] == expected[50:100]
    assert client.get(url + "&cursor=not-a-cursor").status_code == 404
