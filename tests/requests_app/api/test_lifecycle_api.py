"""An active grant's lifecycle through the API: repair, extend, decide the
extension, download the change; and who is refused with which status."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import yaml
from django.utils import timezone

from requests_app.models import AccessRequest, RequestState

DRIFT = {
    "drifted": True,
    "kinds": ["secret_statement_missing"],
    "findings": [
        {"kind": "secret_statement_missing", "resource": "arn:aws:secretsmanager:eu-west-1:2:secret:db",
         "message": "The grant's statement is gone from the secret policy.", "expected": None, "actual": None}
    ],
    "role_id": None,
    "aws_request_ids": [],
}


@pytest.fixture
def grant(filed) -> dict:
    """riley's filed request, now an active grant expiring in a week that has drifted."""
    expires_at = timezone.now().replace(microsecond=0) + timedelta(days=7)
    AccessRequest.objects.filter(pk=filed["id"]).update(
        state=RequestState.ACTIVE, expires_at=expires_at, drift=DRIFT, drift_checked_at=timezone.now()
    )
    return {**filed, "expires_at": expires_at}


def _url(grant: dict, action: str) -> str:
    return f"/api/v1/requests/{grant['id']}/{action}/"


def _later(grant: dict, days: int = 30) -> str:
    return (grant["expires_at"] + timedelta(days=days)).isoformat()


def test_the_detail_shows_the_drift_and_what_each_person_may_do(grant, client_for):
    riley = client_for("riley").get(_url(grant, "")[:-1]).json()
    assert riley["drift"]["kinds"] == ["secret_statement_missing"]
    assert riley["drift"]["findings"][0]["message"] == DRIFT["findings"][0]["message"]
    assert riley["drift_checked_at"] is not None
    assert riley["pending_extension"] is None
    assert riley["drift"]["findings"][0]["account"] == "remote"
    # The statement was removed in the Remote account: the requester may only ask its approvers.
    assert riley["lifecycle_actions"] == ["ask_repair", "export", "extend"]
    assert riley["pending_repair"] is None
    assert client_for("avery").get(_url(grant, "")[:-1]).json()["lifecycle_actions"] == ["export", "repair"]
    assert client_for("sam").get(_url(grant, "")[:-1]).json()["lifecycle_actions"] == ["export", "repair"]
    assert client_for("dana").get(_url(grant, "")[:-1]).json()["lifecycle_actions"] == ["export"]


def test_the_requesters_repair_of_remote_drift_files_a_request_the_approvers_decide(grant, client_for):
    asked = client_for("riley").post(_url(grant, "repair"), {"justification": "Removed by mistake?"}, format="json")
    assert asked.status_code == 200, asked.json()
    body = asked.json()
    assert body["state"] == RequestState.ACTIVE
    assert [step for step in body["steps"] if step["status"] == "pending"] == []
    pending = body["pending_repair"]
    assert (pending["requested_by"], pending["justification"], pending["approved_by"]) == (
        "riley", "Removed by mistake?", [])
    assert pending["findings"][0]["kind"] == "secret_statement_missing"
    assert pending["findings"][0]["account"] == "remote"
    assert body["lifecycle_actions"] == ["export", "extend"]
    again = client_for("riley").post(_url(grant, "repair"), {}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")

    avery = client_for("avery").get(_url(grant, "")[:-1]).json()
    assert avery["pending_repair"]["id"] == pending["id"]
    assert avery["lifecycle_actions"] == ["decide_repair", "export"]

    approved = client_for("avery").post(
        _url(grant, "repair/approve"), {"comment": "Put it back.", "plan_hash": grant["plan_hash"]}, format="json"
    )
    assert approved.status_code == 200, approved.json()
    assert approved.json()["state"] == RequestState.PROVISIONING
    assert approved.json()["pending_repair"] is None
    assert approved.json()["plan_hash"] == grant["plan_hash"]
    assert [step["name"] for step in approved.json()["steps"] if step["status"] == "pending"] == [
        "preflight", "grant_secret_policy", "verify"]


def test_rejecting_a_repair_request_needs_a_comment(grant, client_for):
    client_for("riley").post(_url(grant, "repair"), {}, format="json")
    avery = client_for("avery")
    silent = avery.post(_url(grant, "repair/reject"), {}, format="json")
    assert silent.status_code == 400 and "comment" in silent.json()["errors"]
    rejected = avery.post(_url(grant, "repair/reject"), {"comment": "Removed on purpose."}, format="json")
    assert rejected.status_code == 200, rejected.json()
    assert rejected.json()["pending_repair"] is None
    assert rejected.json()["state"] == RequestState.ACTIVE


@pytest.mark.parametrize(
    ("who", "action", "status"),
    [
        ("riley", "repair/approve", 403),  # never on one's own grant
        ("riley", "repair/reject", 403),
        ("dana", "repair/approve", 403),  # sees it (DataLake approver), decides nothing
        ("olive", "repair/approve", 404),
        ("olive", "repair/reject", 404),
        ("sam", "repair/approve", 403),  # staff repair directly instead
    ],
)
def test_who_may_not_decide_a_repair_request(grant, client_for, who, action, status):
    client_for("riley").post(_url(grant, "repair"), {}, format="json")
    response = client_for(who).post(_url(grant, action), {"comment": "x"}, format="json")
    assert response.status_code == status, response.json()
    detail = client_for("avery").get(_url(grant, "")[:-1]).json()
    assert detail["state"] == RequestState.ACTIVE and detail["pending_repair"] is not None


def test_a_grant_without_drift_is_repaired_by_nobody(grant, client_for):
    AccessRequest.objects.filter(pk=grant["id"]).update(drift={"drifted": False, "kinds": [], "findings": []})
    for who in ("riley", "avery", "sam"):
        response = client_for(who).post(_url(grant, "repair"), {}, format="json")
        assert (response.status_code, response.json()["code"]) == (409, "invalid_transition"), who


def test_an_extension_asked_by_the_requester_moves_the_expiry_once_approved(grant, client_for):
    new_expiry = _later(grant)
    asked = client_for("riley").post(
        _url(grant, "extend"), {"expires_at": new_expiry, "justification": "Migration runs a month longer."}, format="json"
    )
    assert asked.status_code == 200, asked.json()
    pending = asked.json()["pending_extension"]
    assert pending["requested_by"] == "riley"
    assert datetime.fromisoformat(pending["expires_at"]) == datetime.fromisoformat(new_expiry)
    assert datetime.fromisoformat(asked.json()["expires_at"]) == grant["expires_at"]  # not moved yet
    assert "extend" not in asked.json()["lifecycle_actions"]

    stale = client_for("avery").post(_url(grant, "extension/approve"), {"plan_hash": "0" * 64}, format="json")
    assert stale.status_code == 409 and stale.json()["current_plan_hash"] == grant["plan_hash"]
    assert client_for("riley").get(_url(grant, "")[:-1]).json()["pending_extension"]["approved_by"] == []
    seen = {"comment": "ok", "plan_hash": grant["plan_hash"]}
    approved = client_for("avery").post(_url(grant, "extension/approve"), seen, format="json")
    assert approved.status_code == 200, approved.json()
    assert approved.json()["pending_extension"] is None
    assert datetime.fromisoformat(approved.json()["expires_at"]) == datetime.fromisoformat(new_expiry)


def test_rejecting_an_extension_needs_a_comment_and_keeps_the_expiry(grant, client_for):
    client_for("riley").post(_url(grant, "extend"), {"expires_at": _later(grant)}, format="json")
    avery = client_for("avery")
    silent = avery.post(_url(grant, "extension/reject"), {}, format="json")
    assert silent.status_code == 400
    assert "comment" in silent.json()["errors"]
    rejected = avery.post(_url(grant, "extension/reject"), {"comment": "Not this quarter."}, format="json")
    assert rejected.status_code == 200, rejected.json()
    assert rejected.json()["pending_extension"] is None
    assert datetime.fromisoformat(rejected.json()["expires_at"]) == grant["expires_at"]


@pytest.mark.parametrize(
    ("who", "action", "body", "status"),
    [
        ("olive", "extend", "later", 404),  # sees nothing of it
        ("avery", "extend", "later", 403),  # an approver does not ask for the requester
        ("riley", "extend", "earlier", 400),  # an extension moves the expiry later
        ("avery", "extension/approve", "seen", 409),  # nothing pending
        ("avery", "extension/approve", {}, 400),  # the plan that was seen is not named
        ("avery", "repair/approve", "seen", 409),  # nothing pending
        ("avery", "repair/approve", {}, 400),  # the plan that was seen is not named
        ("olive", "repair", {}, 404),
        ("dana", "repair", {}, 403),  # sees it (DataLake approver) but may not repair it
    ],
)
def test_refusals(grant, client_for, who, action, body, status):
    if body == "later":
        body = {"expires_at": _later(grant)}
    elif body == "seen":
        body = {"plan_hash": grant["plan_hash"]}
    elif body == "earlier":
        body = {"expires_at": _later(grant, days=-1)}
    response = client_for(who).post(_url(grant, action), body, format="json")
    assert response.status_code == status, response.json()
    assert AccessRequest.objects.get(pk=grant["id"]).state == RequestState.ACTIVE


def test_nobody_approves_the_extension_of_their_own_grant(grant, client_for):
    client_for("riley").post(_url(grant, "extend"), {"expires_at": _later(grant)}, format="json")
    response = client_for("riley").post(_url(grant, "extension/approve"), {}, format="json")
    assert response.status_code == 403


def test_only_an_active_grant_is_extended_or_repaired(filed, client_for):
    riley = client_for("riley")
    later = (timezone.now() + timedelta(days=60)).isoformat()
    extended = riley.post(_url(filed, "extend"), {"expires_at": later}, format="json")
    assert (extended.status_code, extended.json()["code"]) == (409, "invalid_transition")
    repaired = riley.post(_url(filed, "repair"), {}, format="json")
    assert (repaired.status_code, repaired.json()["code"]) == (409, "invalid_transition")
    assert AccessRequest.objects.get(pk=filed["id"]).state == RequestState.PENDING_APPROVAL


def test_repair_puts_the_grant_back_to_provisioning_with_the_same_plan(grant, client_for):
    response = client_for("avery").post(_url(grant, "repair"), {}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["state"] == RequestState.PROVISIONING
    assert response.json()["plan_hash"] == grant["plan_hash"]
    assert {step["status"] for step in response.json()["steps"] if step["phase"] == "grant"} == {"pending"}


def test_the_cloudformation_export_is_yaml_holding_the_role(grant, client_for):
    response = client_for("dana").get(_url(grant, "export"), {"format": "cloudformation"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    assert f'dms-access-request-{grant["id"]}.yaml' in response["Content-Disposition"]
    (role,) = yaml.safe_load(response.content)["Resources"].values()
    assert role["Properties"]["RoleName"] == grant["role_name"]


def test_the_json_export_is_the_two_remote_documents(grant, client_for):
    response = client_for("riley").get(_url(grant, "export"), {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"secret_policy", "key_policy"}
    assert body["secret_policy"]["Statement"]


def test_the_cli_export_is_plain_text_commands(grant, client_for):
    response = client_for("riley").get(_url(grant, "export"), {"format": "cli"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "aws iam create-role" in response.content.decode()
    assert grant["role_name"] in response.content.decode()


def test_the_export_refuses_an_unknown_format_and_an_outsider(grant, client_for):
    unknown = client_for("riley").get(_url(grant, "export"), {"format": "terraform"})
    assert (unknown.status_code, list(unknown.json()["errors"])) == (400, ["format"])
    assert client_for("olive").get(_url(grant, "export"), {"format": "json"}).status_code == 404
    assert client_for(None).get(_url(grant, "export"), {"format": "json"}).status_code == 401
