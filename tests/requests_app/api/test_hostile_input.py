"""Whatever a client sends, the answer is a 4xx with a reason, never a 500."""
from __future__ import annotations

import json

import pytest

from requests_app.models import AccessRequest


@pytest.fixture
def riley(client_for):
    return client_for("riley")


def _raw_post(client, path: str, payload: str, content_type: str = "application/json"):
    return client.generic("POST", path, payload.encode("utf-8", "surrogatepass"), content_type=content_type)


@pytest.mark.parametrize(
    "payload",
    ['{"engine": ', "[1, 2, 3]", '"just a string"', "null", "", "\x00", '{"a": NaN}', "[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000],
)
def test_malformed_or_non_object_json_is_a_400(portal, riley, payload):
    response = _raw_post(riley, "/api/v1/requests/", payload)

    assert response.status_code == 400
    assert response.json()["detail"]


def test_another_content_type_is_a_415(portal, riley, submit_body):
    response = riley.post("/api/v1/requests/", submit_body)  # multipart form

    assert response.status_code == 415


@pytest.mark.parametrize(
    "changes",
    [
        {"engine": None, "justification": None},
        {"engine": 42, "endpoint_identifier": ["a"], "justification": {"why": 1}},
        {"secret_arn": "x" * 100_000},
        {"endpoint_identifier": "ünïcödé-端点"},
        {"justification": "\ud800 lone surrogate"},
        {"justification": "nul \x00 inside"},
        {"expires_at": "not a date"},
        {"expires_at": "2020-01-01T00:00:00Z"},
        {"expires_at": "9999-12-31T23:59:59-14:00"},
        {"expires_at": 1700000000},
        {"datalake_account": "1" * 5000},
        {"role_name": "r" * 5000},
    ],
)
def test_bad_values_are_a_400_naming_the_fields(portal, riley, submit_body, changes):
    body = json.dumps({**submit_body, **changes}, ensure_ascii=True)

    response = _raw_post(riley, "/api/v1/requests/", body)

    assert response.status_code == 400, response.content
    assert set(response.json()["errors"]) & set(changes)
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize(
    "body",
    ['{"comment": ["a"]}', '{"comment": "' + "c" * 20000 + '"}', "[]", '{"comment": "\\u0000"}'],
)
def test_bad_comment_bodies_are_a_400(filed, client_for, body):
    for action in ("approve", "reject"):
        response = _raw_post(client_for("avery"), f"/api/v1/requests/{filed['id']}/{action}/", body)
        assert response.status_code == 400, (action, response.content)
    assert AccessRequest.objects.get(pk=filed["id"]).state == "pending_approval"


def test_unknown_api_paths_and_methods_answer_in_json(portal, riley, filed):
    assert riley.get("/api/v1/nothing-here/").status_code == 404
    assert riley.get("/api/v1/nothing-here/").json()["code"] == "not_found"
    assert riley.post("/api/v1/requests", {}, format="json").status_code == 404  # no slash: no redirect of a POST
    assert riley.delete(f"/api/v1/requests/{filed['id']}/").status_code == 405
    assert riley.put("/api/v1/accounts/", {}, format="json").status_code == 405
