"""/api/v1/request-sets/: filing several grants at once, the one plan, approving it once; who may and who sees."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from requests_app.models import AccessRequest, AuditEvent, Decision, RequestSet
from requests_app.services.request_sets import MAX_GRANTS
from requests_app.visibility import KEY_PLACEHOLDER
from tests.aws_world import DATALAKE_ID, REMOTE_ID

URL = "/api/v1/request-sets/"


def _grant(world, identifier: str, engine: str = "mysql", **fields) -> dict:
    return {"secret_arn": world.secret_arn, "engine": engine, "endpoint_identifier": identifier, **fields}


def _body(world, *grants) -> dict:
    return {
        "datalake_account": DATALAKE_ID,
        "justification": "Two order databases into the lake.",
        "grants": list(grants) or [_grant(world, "orders-a"), _grant(world, "orders-b", "postgres")],
    }


@pytest.fixture
def filed_set(portal, client_for) -> dict:
    """riley's set of two grants on the runbook's secret, filed through the API."""
    response = client_for("riley").post(URL, _body(portal), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _post(client, set_id, action: str, body: dict | None = None):
    return client.post(f"{URL}{set_id}/{action}/", body or {}, format="json")


def _states(set_id: int) -> list[str]:
    return list(AccessRequest.objects.filter(request_set_id=set_id).order_by("pk").values_list("state", flat=True))


def _error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["code"], str)
    return body


# --- filing --------------------------------------------------------------------------------------------


def test_filing_answers_201_with_the_set_and_its_location(portal, client_for):
    response = client_for("riley").post(URL, _body(portal), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Location"] == f"{URL}{body['id']}/"
    assert (body["requester"], body["datalake_account"], body["remote_account"]) == ("riley", DATALAKE_ID, REMOTE_ID)
    assert body["states"] == {"pending_approval": 2}
    assert [g["endpoint_identifier"] for g in body["grants"]] == ["orders-a", "orders-b"]
    assert body["plan_hash"] and "approve" not in body["allowed_actions"]
    assert set(AccessRequest.objects.filter(request_set_id=body["id"]).values_list("pk", flat=True)) == {
        g["id"] for g in body["grants"]
    }
    assert client_for("riley").get(response["Location"]).json()["id"] == body["id"]


@pytest.mark.parametrize(
    "change, keys",
    [
        pytest.param(lambda b, w: b["grants"][1].update(engine="cobol"), {"grants.1.engine"}, id="bad-engine"),
        pytest.param(lambda b, w: b["grants"][1].pop("engine"), {"grants.1.engine"}, id="missing-engine"),
        pytest.param(lambda b, w: b.update(justification=""), {"justification"}, id="blank-justification"),
        pytest.param(lambda b, w: b.pop("justification"), {"justification"}, id="missing-justification"),
        pytest.param(lambda b, w: b["grants"].__setitem__(1, "orders-b"), {"grants.1.non_field_errors"}, id="grant-not-an-object"),
        pytest.param(lambda b, w: b.update(grants=[]), {"grants"}, id="no-grants"),
        pytest.param(lambda b, w: b.update(grants="orders"), {"grants"}, id="grants-not-a-list"),
        pytest.param(
            lambda b, w: b.update(grants=[_grant(w, f"orders-{i}") for i in range(MAX_GRANTS + 1)]), {"grants"},
            id="too-many",
        ),
        pytest.param(
            lambda b, w: b["grants"][1].update(endpoint_identifier="orders-a", role_name="other-role"),
            {"grants.1.endpoint_identifier"}, id="duplicate-endpoint",
        ),
        pytest.param(
            lambda b, w: [g.update(role_name="shared-role") for g in b["grants"]], {"grants.1.role_name"},
            id="duplicate-role",
        ),
        pytest.param(
            lambda b, w: b["grants"][1].update(secret_arn=w.secret_arn.replace(REMOTE_ID, "333333333333")),
            {"grants.1.secret_arn"}, id="other-remote-account",
        ),
    ],
)
def test_a_bad_body_answers_400_keyed_by_grant_and_files_nothing(portal, client_for, change, keys):
    body = _body(portal)
    change(body, portal)
    events = AuditEvent.objects.count()

    response = client_for("riley").post(URL, body, format="json")

    error = _error(response, 400)
    assert error["code"] == "invalid" and set(error["errors"]) == keys, error
    assert not RequestSet.objects.exists() and not AccessRequest.objects.exists()
    assert AuditEvent.objects.count() == events


def test_a_body_that_is_not_json_answers_400(portal, client_for):
    response = client_for("riley").post(URL, "{nope", content_type="application/json")
    assert _error(response, 400)["errors"] == {}


def test_filing_without_a_token_answers_401(portal, client_for):
    assert client_for(None).post(URL, _body(portal), format="json").status_code == 401
    assert client_for(None).get(URL).status_code == 401
    assert APIClient().get(f"{URL}1/plan/").status_code == 401


@pytest.mark.parametrize("name", ["avery", "olive", "dana"])
def test_only_a_requester_files(portal, client_for, name):
    _error(client_for(name).post(URL, _body(portal), format="json"), 403)
    assert not RequestSet.objects.exists()


# --- reading -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["riley", "avery", "dana", "sam"])
def test_the_requester_the_approvers_and_staff_see_the_set(filed_set, client_for, name):
    client = client_for(name)
    listing = client.get(URL)
    assert listing.status_code == 200
    assert [item["id"] for item in listing.json()["results"]] == [filed_set["id"]]
    assert client.get(f"{URL}{filed_set['id']}/").json()["grants"] == filed_set["grants"]
    assert client.get(f"{URL}{filed_set['id']}/plan/").status_code == 200


def test_an_outsider_sees_no_set_and_a_hidden_one_looks_missing(filed_set, client_for):
    client = client_for("olive")
    assert client.get(URL).json()["results"] == []
    for suffix in ("", "plan/"):
        hidden = client.get(f"{URL}{filed_set['id']}/{suffix}")
        missing = client.get(f"{URL}{filed_set['id'] + 1000}/{suffix}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == missing.json()
    for action in ("approve", "reject", "revoke"):
        _error(_post(client, filed_set["id"], action, {"plan_hash": filed_set["plan_hash"], "comment": "x"}), 404)
    assert _states(filed_set["id"]) == ["pending_approval"] * 2


@pytest.mark.parametrize("set_id", ["abc", "0", "-1", "1.5", "9" * 30, "%C2%B2", "1e3"])
def test_a_malformed_or_huge_id_answers_404(filed_set, client_for, set_id):
    client = client_for("avery")
    for suffix in ("", "plan/"):
        _error(client.get(f"{URL}{set_id}/{suffix}"), 404)
    _error(_post(client, set_id, "approve", {"plan_hash": filed_set["plan_hash"]}), 404)


def test_the_plan_groups_two_grants_on_one_secret_under_that_secret(filed_set, client_for, portal):
    plan = client_for("avery").get(f"{URL}{filed_set['id']}/plan/").json()
    grant_ids = [g["id"] for g in filed_set["grants"]]

    assert plan["plan_hash"] == filed_set["plan_hash"] and plan["awaiting"] == grant_ids
    assert [row["request"] for row in plan["grants"]] == grant_ids
    assert [entry["arn"] for entry in plan["secrets"]] == [portal.secret_arn]
    assert [s["request"] for s in plan["secrets"][0]["statements"]] == grant_ids
    assert [entry["arn"] for entry in plan["keys"]] == [portal.key_arn]
    assert [s["request"] for s in plan["keys"][0]["statements"]] == grant_ids


@pytest.mark.parametrize("name, sees_key", [("avery", True), ("sam", True), ("riley", False), ("dana", False)])
def test_the_plan_hides_the_resolved_key_from_who_may_not_see_it_yet(filed_set, client_for, portal, name, sees_key):
    response = client_for(name).get(f"{URL}{filed_set['id']}/plan/")
    text = response.content.decode()
    key_id = portal.key_arn.rsplit("/", 1)[1]

    assert (portal.key_arn in text) is sees_key and (key_id in text) is sees_key
    assert (KEY_PLACEHOLDER in text) is not sees_key
    # The hash to approve is the same for everyone: of the plan as it is.
    assert response.json()["plan_hash"] == filed_set["plan_hash"]
    detail = client_for(name).get(f"{URL}{filed_set['id']}/").content.decode()
    if not sees_key:
        assert portal.key_arn not in detail and key_id not in detail


# --- deciding ------------------------------------------------------------------------------------------


def test_the_remote_approver_approves_every_grant_once(filed_set, client_for):
    client = client_for("avery")
    assert "approve" in client.get(f"{URL}{filed_set['id']}/").json()["allowed_actions"]

    response = _post(client, filed_set["id"], "approve", {"plan_hash": filed_set["plan_hash"], "comment": "ok"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["states"] == {"approved": 2} and body["plan_hash"] == "" and "approve" not in body["allowed_actions"]
    assert _states(filed_set["id"]) == ["approved", "approved"]
    assert AuditEvent.objects.filter(action="request_set.approved", actor_label="avery").count() == 1
    # Nothing awaits: approving again answers 409.
    _error(_post(client, filed_set["id"], "approve", {"plan_hash": filed_set["plan_hash"]}), 409)


@pytest.mark.parametrize("name", ["riley", "dana"])
@pytest.mark.parametrize("action", ["approve", "reject"])
def test_who_is_no_remote_approver_may_not_decide(filed_set, client_for, name, action):
    response = _post(client_for(name), filed_set["id"], action, {"plan_hash": filed_set["plan_hash"], "comment": "x"})
    assert _error(response, 403)["code"] == "permission_denied"
    assert _states(filed_set["id"]) == ["pending_approval"] * 2 and not Decision.objects.exists()


def test_a_stale_hash_answers_409_with_the_current_one(filed_set, client_for):
    first = filed_set["grants"][0]["id"]
    assert client_for("riley").post(f"/api/v1/requests/{first}/cancel/", {}, format="json").status_code == 200

    response = _post(client_for("avery"), filed_set["id"], "approve", {"plan_hash": filed_set["plan_hash"]})

    body = _error(response, 409)
    assert body["code"] == "plan_changed"
    current = client_for("avery").get(f"{URL}{filed_set['id']}/plan/").json()
    assert body["current_plan_hash"] == current["plan_hash"] != filed_set["plan_hash"]
    assert current["awaiting"] == [filed_set["grants"][1]["id"]]
    assert _states(filed_set["id"]) == ["cancelled", "pending_approval"]
    ok = _post(client_for("avery"), filed_set["id"], "approve", {"plan_hash": body["current_plan_hash"]})
    assert ok.status_code == 200 and _states(filed_set["id"]) == ["cancelled", "approved"]


def test_approving_without_a_hash_answers_400(filed_set, client_for):
    body = _error(_post(client_for("avery"), filed_set["id"], "approve"), 400)
    assert "plan_hash" in body["errors"]


def test_a_grant_of_a_set_is_not_approved_alone(filed_set, client_for):
    grant = client_for("avery").get(f"/api/v1/requests/{filed_set['grants'][0]['id']}/").json()
    assert "approve" not in grant["allowed_actions"]
    response = client_for("avery").post(
        f"/api/v1/requests/{grant['id']}/approve/", {"plan_hash": grant["plan_hash"]}, format="json"
    )
    assert response.status_code in (403, 409)
    assert _states(filed_set["id"]) == ["pending_approval"] * 2


def test_rejecting_needs_a_comment_and_rejects_every_grant(filed_set, client_for):
    client = client_for("avery")
    assert "comment" in _error(_post(client, filed_set["id"], "reject"), 400)["errors"]
    response = _post(client, filed_set["id"], "reject", {"comment": "Not these."})
    assert response.status_code == 200, response.json()
    assert response.json()["states"] == {"rejected": 2}
    _error(_post(client, filed_set["id"], "reject", {"comment": "again"}), 409)


def test_revoking_a_set_with_nothing_revocable_answers_409(filed_set, client_for):
    _error(_post(client_for("riley"), filed_set["id"], "revoke"), 409)
    _error(_post(client_for("olive"), filed_set["id"], "revoke"), 404)
    _error(_post(client_for("dana"), filed_set["id"], "revoke"), 403)


def test_revoking_revokes_the_active_grants(filed_set, client_for):
    first, second = (g["id"] for g in filed_set["grants"])
    AccessRequest.objects.filter(pk=first).update(state="active")
    response = _post(client_for("riley"), filed_set["id"], "revoke")
    assert response.status_code == 200, response.json()
    assert _states(filed_set["id"]) == ["revoking", "pending_approval"]


def test_approve_is_offered_only_when_every_awaiting_grant_can_be_approved(portal, client_for):
    missing = portal.secret_arn.rsplit(":", 1)[0] + ":prod/missing-db-AbCdEf"
    filed = client_for("riley").post(
        URL, _body(portal, _grant(portal, "orders-a"), _grant(portal, "orders-b", secret_arn=missing)), format="json"
    ).json()
    detail = client_for("avery").get(f"{URL}{filed['id']}/").json()
    assert "approve" not in detail["allowed_actions"] and "reject" in detail["allowed_actions"]
    refused = _post(client_for("avery"), filed["id"], "approve", {"plan_hash": detail["plan_hash"]})
    assert f"#{filed['grants'][1]['id']}" in _error(refused, 403)["detail"]
    assert _states(filed["id"]) == ["pending_approval"] * 2


def test_with_a_quorum_of_two_approve_is_offered_to_who_has_not_approved_yet(filed_set, client_for, accounts, people):
    accounts["remote"].required_approvals = 2
    accounts["remote"].save()
    accounts["remote"].approvers.add(people["olive"])
    assert _post(client_for("avery"), filed_set["id"], "approve", {"plan_hash": filed_set["plan_hash"]}).status_code == 200
    assert "approve" not in client_for("avery").get(f"{URL}{filed_set['id']}/").json()["allowed_actions"]
    second = client_for("olive").get(f"{URL}{filed_set['id']}/").json()
    assert "approve" in second["allowed_actions"] and second["plan_hash"] == filed_set["plan_hash"]
    assert _post(client_for("olive"), filed_set["id"], "approve", {"plan_hash": second["plan_hash"]}).status_code == 200
    assert _states(filed_set["id"]) == ["approved", "approved"]


@pytest.mark.parametrize("who", ["riley", "avery"])
def test_the_plan_costs_the_same_queries_for_3_and_12_grants(portal, client_for, who, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    filed = client_for("riley").post(URL, _body(portal, *(_grant(portal, f"few-{n}") for n in range(3))), format="json")
    many = client_for("riley").post(URL, _body(portal, *(_grant(portal, f"many-{n}") for n in range(12))), format="json")
    assert (filed.status_code, many.status_code) == (201, 201)
    client = client_for(who)
    with CaptureQueriesContext(connection) as at_three:
        assert client.get(f"{URL}{filed.json()['id']}/plan/").status_code == 200
    with django_assert_max_num_queries(len(at_three)):
        plan = client.get(f"{URL}{many.json()['id']}/plan/").json()
    assert len(plan["grants"]) == 12


def test_each_grant_names_its_set_and_the_requests_list_narrows_to_a_set(portal, client_for, filed_set):
    client = client_for("avery")
    ids = sorted(grant["id"] for grant in filed_set["grants"])
    assert client.get(f"/api/v1/requests/{ids[0]}/").json()["request_set"] == filed_set["id"]
    listed = client.get("/api/v1/requests/", {"request_set": filed_set["id"]}).json()["results"]
    assert sorted(row["id"] for row in listed) == ids and {row["request_set"] for row in listed} == {filed_set["id"]}
    alone = client_for("riley").post("/api/v1/requests/", {
        "datalake_account": DATALAKE_ID, "secret_arn": portal.secret_arn, "engine": "mysql",
        "endpoint_identifier": "on-its-own", "justification": "One database.",
    }, format="json").json()  # fmt: skip
    assert alone["request_set"] is None
    assert client.get("/api/v1/requests/", {"request_set": filed_set["id"] + 1000}).json()["results"] == []
