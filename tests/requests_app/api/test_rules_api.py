"""/api/v1/rules/: approval rules through the API, and which rule approved a request."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from requests_app.models import AccessRequest, ApprovalRuleVersion, AuditEvent
from tests.aws_world import DATALAKE_ID, REMOTE_ID
from tests.factories import UserFactory

URL = "/api/v1/rules/"
RULE = {
    "account_id": REMOTE_ID,
    "name": "nightly mysql",
    "datalake_accounts": [DATALAKE_ID],
    "engines": ["mysql"],
    "secret_name_prefix": "prod/",
    "max_expiry_days": 30,
    "comment": "the routine CDC jobs",
}


@pytest.fixture
def rhea(people, accounts):
    """A second approver of the Remote account."""
    people["rhea"] = UserFactory(username="rhea")
    accounts["remote"].approvers.add(people["rhea"])
    return people["rhea"]


def _propose(client_for, who="avery", **fields):
    return client_for(who).post(URL, {**RULE, **fields}, format="json")


def test_an_approver_proposes_and_another_brings_the_rule_into_force(
    accounts, rhea, client_for, django_capture_on_commit_callbacks
):
    proposed = _propose(client_for)
    assert proposed.status_code == 201, proposed.json()
    rule = proposed.json()
    assert rule["in_force"] is None
    assert (rule["proposed"]["number"], rule["proposed"]["proposed_by"]) == (1, "avery")
    assert rule["proposed"]["datalake_accounts"] == [DATALAKE_ID]

    own = client_for("avery").post(f"{URL}{rule['id']}/approve/", {"version": 1}, format="json")
    assert own.status_code == 403
    stale = client_for("rhea").post(f"{URL}{rule['id']}/approve/", {"version": 2}, format="json")
    assert stale.status_code == 409
    with django_capture_on_commit_callbacks(execute=True):
        approved = client_for("rhea").post(f"{URL}{rule['id']}/approve/", {"version": 1, "comment": "ok"}, format="json")
    assert approved.status_code == 200, approved.json()
    assert approved.json()["in_force"]["number"] == 1
    assert approved.json()["in_force"]["approved_by"] == ["rhea"]

    assert [r["name"] for r in client_for("avery").get(URL).json()] == ["nightly mysql"]
    assert [r["name"] for r in client_for("sam").get(f"{URL}?account={REMOTE_ID}").json()] == ["nightly mysql"]
    for outsider in ("riley", "olive", "dana"):
        assert client_for(outsider).get(URL).json() == []
        assert client_for(outsider).get(f"{URL}{rule['id']}/").status_code == 404

    disable = client_for("rhea").post(f"{URL}{rule['id']}/disable/", {"comment": "audit"}, format="json")
    assert disable.status_code == 200 and disable.json()["proposed"]["enabled"] is False
    again = client_for("avery").post(f"{URL}{rule['id']}/change/", {**RULE, "engines": ["postgres"]}, format="json")
    assert again.status_code == 409  # one proposed change at a time
    rejected = client_for("avery").post(f"{URL}{rule['id']}/reject/", {"version": 2}, format="json")
    assert rejected.status_code == 400 and "comment" in rejected.json()["errors"]


def test_who_may_not_is_refused_before_the_body_is_read(accounts, rhea, client_for):
    # Not an approver of any account: 403 whatever the body.
    assert client_for("riley").post(URL, {"nonsense": True}, format="json").status_code == 403
    assert client_for(None).post(URL, RULE, format="json").status_code == 401
    # An approver of another account (the DataLake's) may not propose for this one.
    assert _propose(client_for, "dana").status_code == 403
    rule = _propose(client_for).json()
    for outsider in ("riley", "olive", "dana"):
        response = client_for(outsider).post(f"{URL}{rule['id']}/approve/", {"junk": 1}, format="json")
        assert response.status_code == 404
    # An administrator sees the rule but decides nothing for the account.
    assert client_for("sam").post(f"{URL}{rule['id']}/approve/", {"junk": 1}, format="json").status_code == 403
    assert ApprovalRuleVersion.objects.get().state == "proposed"
    assert not AuditEvent.objects.filter(action="rule.approval").exists()


def test_the_list_filter_takes_only_an_account_id(accounts, client_for):
    assert client_for("avery").get(f"{URL}?account={REMOTE_ID}").status_code == 200
    for bad in ("", "12", "x" * 12):
        assert client_for("avery").get(f"{URL}?account={bad}").status_code == 400


def test_bad_criteria_are_named(accounts, client_for):
    response = _propose(client_for, engines=["excel"], secret_name_prefix="prod/*", max_expiry_days=0,
                        datalake_accounts=["12"])  # fmt: skip
    assert response.status_code == 400
    # A list's bad item is named with its index (``engines.0``).
    named = {field.split(".")[0] for field in response.json()["errors"]}
    assert named == {"engines", "secret_name_prefix", "max_expiry_days", "datalake_accounts"}
    unknown = _propose(client_for, datalake_accounts=["999999999999"])
    assert unknown.status_code == 400 and "datalake_accounts" in unknown.json()["errors"]


def test_the_request_says_which_rule_approved_it(
    portal, accounts, rhea, client_for, submit_body, django_capture_on_commit_callbacks
):
    rule = _propose(client_for, secret_name_prefix="prod/source-db/").json()
    with django_capture_on_commit_callbacks(execute=True):
        client_for("rhea").post(f"{URL}{rule['id']}/approve/", {"version": 1}, format="json")
    expires = (timezone.now() + timedelta(days=7)).isoformat()
    with django_capture_on_commit_callbacks(execute=True):
        filed = client_for("riley").post("/api/v1/requests/", {**submit_body, "expires_at": expires}, format="json")
    assert filed.status_code == 201, filed.json()
    request_id = filed.json()["id"]
    assert AccessRequest.objects.get(pk=request_id).state == "approved"

    decisions = client_for("riley").get(f"/api/v1/requests/{request_id}/rule-decisions/")
    assert decisions.status_code == 200
    [decision] = decisions.json()
    assert (decision["rule"], decision["version"], decision["whole_decision"]) == ("nightly mysql", 1, True)
    assert decision["plan_hash"] == AccessRequest.objects.get(pk=request_id).plan_hash
    assert client_for("olive").get(f"/api/v1/requests/{request_id}/rule-decisions/").status_code == 404
