"""The approval rules pages: who sees them, proposing and deciding there, and
the request page naming the rule that approved it."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from requests_app.models import AccessRequest, ApprovalRule, ApprovalRuleVersion
from requests_app.services import rule_propose, rule_version_approve
from requests_app.services.rules import request_match_rules
from tests.requests_app.page_rows import make_accounts, make_request, make_users

pytestmark = pytest.mark.django_db

FORM = {
    "account_id": "222222222222",
    "name": "nightly orders",
    "datalake_accounts": ["111111111111"],
    "engines": ["mysql", "postgres"],
    "secret_name_prefix": "prod/",
    "max_expiry_days": "14",
    "comment": "the routine CDC jobs",
}


@pytest.fixture
def site():
    users = make_users()
    return users, make_accounts(users)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _rule(users, **fields) -> ApprovalRuleVersion:
    body = {key: value for key, value in FORM.items() if key != "account_id"}
    body["max_expiry_days"] = int(body["max_expiry_days"])
    return rule_propose(user=users["approver"], account_id=FORM["account_id"], **{**body, **fields})


def test_an_approver_proposes_on_the_page_and_another_approves_it(site):
    users, accounts = site
    page = _client(users["approver"]).get("/rules/")
    assert page.status_code == 200 and b"Propose a rule" in page.content

    response = _client(users["approver"]).post("/rules/", FORM)
    rule = ApprovalRule.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/rules/{rule.pk}/"
    version = rule.versions.get()
    assert sorted(version.engines) == ["mysql", "postgres"]
    assert [a.account_id for a in version.datalake_accounts.all()] == ["111111111111"]

    own = _client(users["approver"]).get(f"/rules/{rule.pk}/").content.decode()
    assert "Approve version 1" not in own and "Withdraw" in own
    other = _client(users["second_approver"]).get(f"/rules/{rule.pk}/").content.decode()
    assert "Approve version 1" in other

    done = _client(users["second_approver"]).post(f"/rules/{rule.pk}/approve/", {"version": "1"})
    assert done.status_code == 302
    version.refresh_from_db()
    assert version.state == ApprovalRuleVersion.State.IN_FORCE
    shown = _client(users["approver"]).get(f"/rules/{rule.pk}/").content.decode()
    assert "Version 1" in shown and "Propose to disable" in shown


def test_a_bad_proposal_names_its_fields_and_writes_nothing(site):
    users, _ = site
    response = _client(users["approver"]).post("/rules/", {**FORM, "engines": ["excel"], "max_expiry_days": "0"})
    assert response.status_code == 400
    assert not ApprovalRule.objects.exists()
    page = response.content.decode()
    assert "&quot;excel&quot; is not a valid choice." in page
    assert "Ensure this value is greater than or equal to 1." in page


def test_who_does_not_approve_for_the_account_neither_sees_nor_decides_its_rules(site):
    users, accounts = site
    version = _rule(users)
    for outsider in (users["requester"], users["outsider"]):
        assert _client(outsider).get(f"/rules/{version.rule_id}/").status_code == 404
        assert _client(outsider).post(f"/rules/{version.rule_id}/approve/", {"version": "1"}).status_code == 404
        assert b"nightly orders" not in _client(outsider).get("/rules/").content
        assert _client(outsider).post("/rules/", FORM).status_code == 403
    staff = _client(users["staff"])
    page = staff.get(f"/rules/{version.rule_id}/")
    assert page.status_code == 200 and b"Approve version 1" not in page.content
    assert staff.post(f"/rules/{version.rule_id}/approve/", {"version": "1"}).status_code == 403
    version.refresh_from_db()
    assert version.state == ApprovalRuleVersion.State.PROPOSED


def test_the_rules_page_costs_the_same_queries_for_many_rules(site):
    users, _ = site
    client = _client(users["approver"])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/rules/").status_code == 200
        return len(captured)

    _rule(users, name="one")
    few = queries()
    for number in range(5):
        _rule(users, name=f"more {number}")
    assert queries() == few


def test_the_request_page_says_which_rule_and_version_approved_it(site, django_capture_on_commit_callbacks):
    users, accounts = site
    version = _rule(users, secret_name_prefix="prod/source-db/")
    with django_capture_on_commit_callbacks(execute=True):
        rule_version_approve(rule_id=version.rule_id, user=users["second_approver"], version=1)
    request = make_request(users["requester"], accounts)
    AccessRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() + timedelta(days=3))
    with django_capture_on_commit_callbacks(execute=True):
        assert request_match_rules(request_id=request.pk) is not None

    page = _client(users["requester"]).get(f"/requests/{request.pk}/").content.decode()
    assert "Approved by rule" in page and "nightly orders</strong>, version 1" in page
    assert "No decision yet" not in page
