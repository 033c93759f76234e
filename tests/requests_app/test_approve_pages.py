"""Approving on the pages: next to what will change, naming the plan that was seen.

The request page and the approval queue both send the plan hash of the plan
they show; an approval of a plan that changed since is refused with the new
plan on the page (409), and a comment over the limit is refused, never cut.
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from requests_app.web.policy_diff import policy_json
from requests_app.models import AccessRequest, AuditEvent, Decision, ExpiryExtension, RequestState
from requests_app.services import access_request_extend
from requests_app.validation import COMMENT_MAX, COMMENT_TOO_LONG
from tests.requests_app.page_rows import KEY_ARN, SECRET_ARN, make_accounts, make_request, make_users

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    users = make_users()
    return users, make_accounts(users)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _hidden(page: str, name: str) -> list[str]:
    return re.findall(rf'<input type="hidden" name="{name}" value="([^"]*)">', page)


def _approve_url(request: AccessRequest) -> str:
    return reverse("web:request_action", args=[request.pk, "approve"])


def _nothing_decided(request: AccessRequest) -> bool:
    request.refresh_from_db()
    return (
        request.state == RequestState.PENDING_APPROVAL
        and not Decision.objects.filter(request=request).exists()
        and not AuditEvent.objects.filter(request=request, action__startswith="decision.").exists()
    )


def test_the_request_page_approves_the_plan_it_shows(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    approver = _client(users["approver"])
    page = approver.get(reverse("web:request_detail", args=[request.pk])).content.decode()

    assert _hidden(page, "plan_hash") == [request.plan_hash]
    response = approver.post(_approve_url(request), {"plan_hash": _hidden(page, "plan_hash")[0], "comment": "ok"})

    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED
    assert Decision.objects.get(request=request).plan_hash == request.plan_hash


def test_a_plan_changed_since_the_page_was_opened_is_shown_again_and_nothing_is_decided(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    approver = _client(users["approver"])
    page = approver.get(reverse("web:request_detail", args=[request.pk])).content.decode()
    shown = _hidden(page, "plan_hash")[0]
    # The plan changes while the page is open (e.g. a re-run preflight found another key).
    new_plan = {**request.plan, "key_policy_statement": {**request.plan["key_policy_statement"], "Sid": "Changed"}}
    AccessRequest.objects.filter(pk=request.pk).update(plan=new_plan, plan_hash="d" * 64)

    response = approver.post(_approve_url(request), {"plan_hash": shown, "comment": "looks fine"})

    assert response.status_code == 409
    body = response.content.decode()
    assert "the plan changed since you opened it" in body
    assert _hidden(body, "plan_hash") == ["d" * 64]  # the form now names the new plan
    assert "Changed" in body  # the new plan's documents
    assert reverse("web:request_policies", args=[request.pk]) in body  # and its diff
    assert _nothing_decided(request)


@pytest.mark.parametrize("body", [{}, {"plan_hash": ""}, {"plan_hash": "0" * 64}])
def test_an_approval_that_names_no_plan_or_another_one_decides_nothing(site, body):
    users, accounts = site
    request = make_request(users["requester"], accounts)

    response = _client(users["approver"]).post(_approve_url(request), body, follow=True)

    assert response.status_code in (200, 409)
    assert _nothing_decided(request)


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_an_over_long_comment_is_refused_with_the_shared_message_not_dropped(site, action):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    data = {"plan_hash": request.plan_hash, "comment": "x" * (COMMENT_MAX + 1)}

    response = _client(users["approver"]).post(
        reverse("web:request_action", args=[request.pk, action]), data, follow=True
    )

    assert escape(COMMENT_TOO_LONG) in response.content.decode()
    assert _nothing_decided(request)


def test_the_queue_row_shows_what_will_change_and_sends_the_hash_of_exactly_that(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    approver = _client(users["approver"])
    page = approver.get(reverse("web:approval_queue")).content.decode()
    row = re.search(rf'<tr data-request="{request.pk}">(.*?)</tr>', page, re.S).group(1)

    # The statements to be added, and to which secret and key.
    assert f'data-plan-hash="{request.plan_hash}"' in row
    assert escape(policy_json(request.plan["secret_policy_statement"])) in row
    assert escape(policy_json(request.plan["key_policy_statement"])) in row
    assert SECRET_ARN in row and KEY_ARN in row
    assert _hidden(row, "plan_hash") == [request.plan_hash]

    response = approver.post(
        _approve_url(request), {"plan_hash": _hidden(row, "plan_hash")[0], "next": reverse("web:approval_queue")}
    )
    assert response.status_code == 302 and response.url == reverse("web:approval_queue")
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED


def test_a_queue_row_older_than_the_plan_is_refused_with_the_new_plan(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    approver = _client(users["approver"])
    row_hash = _hidden(approver.get(reverse("web:approval_queue")).content.decode(), "plan_hash")[0]
    AccessRequest.objects.filter(pk=request.pk).update(plan_hash="b" * 64)

    response = approver.post(_approve_url(request), {"plan_hash": row_hash, "next": reverse("web:approval_queue")})

    assert response.status_code == 409
    assert "the plan changed since you opened it" in response.content.decode()
    assert _nothing_decided(request)


def test_a_row_whose_request_cannot_be_approved_shows_no_approval(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    AccessRequest.objects.filter(pk=request.pk).update(preflight_status=AccessRequest.PreflightStatus.FAILED)

    page = _client(users["approver"]).get(reverse("web:approval_queue")).content.decode()
    row = re.search(rf'<tr data-request="{request.pk}">(.*?)</tr>', page, re.S).group(1)

    assert _hidden(row, "plan_hash") == [] and "plan-change" not in row
    assert "Approve</button>" not in row and "Reject</button>" in row


def test_an_extension_approved_on_a_page_older_than_the_plan_is_refused_with_the_new_plan(site):
    users, accounts = site
    grant = make_request(users["requester"], accounts, state=RequestState.ACTIVE)
    AccessRequest.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=7))
    access_request_extend(request_id=grant.pk, user=users["requester"], expires_at=timezone.now() + timedelta(days=30))
    approver = _client(users["approver"])
    shown = _hidden(approver.get(reverse("web:request_detail", args=[grant.pk])).content.decode(), "plan_hash")
    assert shown == [grant.plan_hash]
    AccessRequest.objects.filter(pk=grant.pk).update(plan_hash="a" * 64)

    response = approver.post(reverse("web:request_action", args=[grant.pk, "extension_approve"]), {"plan_hash": shown[0]})

    assert response.status_code == 409
    assert "the plan changed since you opened it" in response.content.decode()
    extension = ExpiryExtension.objects.get(request=grant)
    assert extension.state == ExpiryExtension.State.PENDING and not extension.approved_by.exists()
