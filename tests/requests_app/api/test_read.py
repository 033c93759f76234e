"""GET /api/v1/requests/, /requests/{id}/ and /requests/{id}/plan/: who sees what."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from provisioning.documents import plan_hash
from requests_app.models import AccessRequest

URL = "/api/v1/requests/"


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["results"]]


@pytest.mark.parametrize("name", ["riley", "avery", "dana", "sam"])
def test_the_requester_the_approvers_and_staff_see_the_request(filed, client_for, name):
    assert _ids(client_for(name).get(URL)) == [filed["id"]]
    assert client_for(name).get(f"{URL}{filed['id']}/").status_code == 200


def test_an_outsider_sees_nothing_and_gets_404_for_the_request(filed, client_for):
    client = client_for("olive")

    assert _ids(client.get(URL)) == []
    assert client.get(f"{URL}{filed['id']}/").status_code == 404
    assert client.get(f"{URL}{filed['id']}/plan/").status_code == 404


def test_a_missing_request_and_a_hidden_one_look_the_same(filed, client_for):
    hidden = client_for("olive").get(f"{URL}{filed['id']}/")
    missing = client_for("olive").get(f"{URL}{filed['id'] + 1000}/")

    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


def test_the_detail_carries_state_decisions_steps_and_preflight(filed, client_for):
    body = client_for("avery").get(f"{URL}{filed['id']}/").json()

    for field in ("state", "remote_account", "region", "plan_hash", "role_arn", "endpoint_arn", "decisions",
                  "steps", "diagnosis", "preflight", "secret_arn", "engine", "endpoint_identifier", "justification"):
        assert field in body
    assert body["decisions"] == []
    assert body["allowed_actions"] == ["approve", "reject"]
    assert {check["name"] for check in body["preflight"]["checks"]}


def test_the_plan_holds_the_exact_documents_and_matches_its_hash(filed, client_for, portal):
    plan = client_for("avery").get(f"{URL}{filed['id']}/plan/").json()

    assert plan["plan_hash"] == filed["plan_hash"]
    documents = {name: plan[name] for name in plan if name != "plan_hash"}
    assert set(documents) == {
        "role_trust_policy", "role_inline_policy", "secret_policy_statement", "key_policy_statement", "endpoint_settings",
    }
    assert plan_hash(documents) == plan["plan_hash"]
    assert plan["secret_policy_statement"]["Principal"] == {
        "AWS": f"arn:aws:iam::111111111111:role/{filed['role_name']}"
    }
    settings = plan["endpoint_settings"]["MySQLSettings"]
    assert settings["SecretsManagerSecretId"] == portal.secret_arn
    assert "DatabaseName" not in plan["endpoint_settings"]


class TestFilters:
    @pytest.fixture
    def two_requests(self, filed, client_for, submit_body, portal):
        other = {**submit_body, "endpoint_identifier": "legacy-db", "secret_arn": portal.managed_secret_arn}
        second = client_for("riley").post(URL, other, format="json").json()
        client_for("riley").post(f"{URL}{second['id']}/cancel/", format="json")
        return filed, second

    def test_by_state(self, two_requests, client_for):
        first, second = two_requests
        assert _ids(client_for("riley").get(URL, {"state": "cancelled"})) == [second["id"]]
        assert _ids(client_for("riley").get(URL, {"state": "pending_approval"})) == [first["id"]]

    def test_by_accounts(self, two_requests, client_for):
        client = client_for("sam")
        assert len(_ids(client.get(URL, {"datalake_account": "111111111111"}))) == 2
        assert len(_ids(client.get(URL, {"remote_account": "222222222222"}))) == 2
        assert _ids(client.get(URL, {"remote_account": "111111111111"})) == []

    def test_mine(self, two_requests, client_for):
        assert len(_ids(client_for("riley").get(URL, {"mine": "true"}))) == 2
        assert _ids(client_for("sam").get(URL, {"mine": "true"})) == []

    def test_awaiting_my_approval(self, two_requests, client_for):
        first, _ = two_requests
        assert _ids(client_for("avery").get(URL, {"awaiting_my_approval": "true"})) == [first["id"]]
        assert _ids(client_for("riley").get(URL, {"awaiting_my_approval": "true"})) == []
        # dana approves for the DataLake account, not for the secret's account.
        assert _ids(client_for("dana").get(URL, {"awaiting_my_approval": "true"})) == []

    @pytest.mark.parametrize(
        ("param", "value"),
        [("state", "bogus"), ("datalake_account", "abc"), ("remote_account", "9" * 40), ("mine", "perhaps")],
    )
    def test_a_bad_filter_value_is_a_400_naming_it(self, two_requests, client_for, param, value):
        response = client_for("riley").get(URL, {param: value})

        assert response.status_code == 400
        assert list(response.json()["errors"]) == [param]

    def test_unknown_parameters_are_ignored(self, two_requests, client_for):
        assert len(_ids(client_for("riley").get(URL, {"colour": "blue"}))) == 2


class TestPagination:
    def test_page_size_is_honoured_and_capped(self, filed, client_for, submit_body):
        for index in range(3):
            client_for("riley").post(URL, {**submit_body, "endpoint_identifier": f"db-{index}"}, format="json")

        page = client_for("riley").get(URL, {"page_size": 2}).json()
        capped = client_for("riley").get(URL, {"page_size": 10**9}).json()

        assert page["count"] == 4
        assert len(page["results"]) == 2
        assert page["next"] is not None
        assert len(capped["results"]) == 4

    @pytest.mark.parametrize("page", ["999", str(2**70)])
    def test_a_page_that_does_not_exist_is_a_json_404(self, filed, client_for, page):
        response = client_for("riley").get(URL, {"page": page})

        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    @pytest.mark.parametrize(
        ("param", "value"), [("page", "0"), ("page", "abc"), ("page", ""), ("page", "last"), ("page_size", "0"),
                             ("page_size", "null"), ("page_size", ""), ("state", ""), ("mine", "")]
    )
    def test_a_value_the_schema_does_not_allow_is_a_400(self, filed, client_for, param, value):
        # DRF would fall back to the first page, the default size or no filter.
        response = client_for("riley").get(f"{URL}?{param}={value}")

        assert response.status_code == 400, response.content
        assert list(response.json()["errors"]) == [param]


@pytest.mark.parametrize(
    "request_id", ["0", "-1", "abc", "1.5", str(2**63), str(2**64 + 1), "9" * 200, "9" * 5000, "%C3%A9", "١"]
)
def test_ids_that_cannot_exist_are_404_never_a_server_error(filed, client_for, request_id):
    for suffix in ("", "plan/"):
        response = client_for("sam").get(f"{URL}{request_id}/{suffix}")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    response = client_for("sam").post(f"{URL}{request_id}/approve/", {}, format="json")
    assert response.status_code == 404
    assert AccessRequest.objects.count() == 1


class TestQueryCounts:
    """Lists and details cost a fixed number of queries, whatever they hold."""

    @staticmethod
    def _queries(client, path) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path).status_code == 200
        return len(captured)

    def test_lists_do_not_grow_with_their_rows(self, filed, client_for, submit_body):
        client = client_for("avery")
        counts = {}
        for path in (URL, f"{URL}?awaiting_my_approval=true", "/api/v1/audit-events/", "/api/v1/accounts/"):
            counts[path] = self._queries(client, path)
        for index in range(4):
            client_for("riley").post(URL, {**submit_body, "endpoint_identifier": f"more-db-{index}"}, format="json")
        for path, before in counts.items():
            assert self._queries(client, path) == before, path

    def test_a_detail_does_not_grow_with_decisions_and_steps(self, filed, client_for, accounts, people):
        accounts["remote"].required_approvals = 2
        accounts["remote"].save()
        accounts["remote"].approvers.add(people["sam"])
        client = client_for("riley")
        before = self._queries(client, f"{URL}{filed['id']}/")
        seen = {"plan_hash": filed["plan_hash"]}
        client_for("avery").post(f"{URL}{filed['id']}/approve/", seen, format="json")
        client_for("sam").post(f"{URL}{filed['id']}/approve/", seen, format="json")

        body = client.get(f"{URL}{filed['id']}/").json()
        assert len(body["decisions"]) == 2 and len(body["steps"]) == 6
        assert self._queries(client, f"{URL}{filed['id']}/") == before
