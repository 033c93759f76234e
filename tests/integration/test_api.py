"""The REST API end to end: a request filed, approved, provisioned by real
workers against the moto server, and revoked again, all over HTTP with tokens.
"""
from __future__ import annotations

import json
import time

import pytest
from rest_framework.test import APIClient

from tests.factories import api_token_for
from tests.integration.world import FOREIGN_KEY_STATEMENT, ROOT_KEY_STATEMENT
from tests.requests_app.rows import APPROVER, DATALAKE_ID, REMOTE_ID, REQUESTER, portal_accounts, user

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(username: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_for(user(username))}")
    return client


def wait_for_state(client: APIClient, request_id: int, state: str, workers, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/requests/{request_id}/").json()
        if body["state"] in (state, "failed", "needs_reapproval", "active", "revoked"):
            assert body["state"] == state, (body["diagnosis"], [(s["name"], s["status"], s["error"]) for s in body["steps"]])
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} is still {body['state']}\n{workers.logs()}")
        time.sleep(0.2)


def test_file_approve_watch_it_become_active_then_revoke(moto_world, workers):
    portal_accounts()
    requester, approver = client_for(REQUESTER), client_for(APPROVER)
    body = {
        "datalake_account": DATALAKE_ID,
        "secret_arn": moto_world.secret_arn,
        "engine": "postgres",
        "endpoint_identifier": "api-orders-postgres",
        "database_name": "orders",
        "replication_instance_arn": moto_world.replication_instance_arn,
        "justification": "Nightly CDC of the orders database into the lake.",
    }

    filed = requester.post("/api/v1/requests/", body, format="json", HTTP_IDEMPOTENCY_KEY="api-orders-1")
    assert filed.status_code == 201, filed.json()
    request_id = filed.json()["id"]
    assert filed.json()["preflight_status"] == "passed", filed.json()["preflight"]
    plan = approver.get(f"/api/v1/requests/{request_id}/plan/").json()
    assert plan["endpoint_settings"]["PostgreSQLSettings"]["SecretsManagerSecretId"] == moto_world.secret_arn
    seen = approver.get(f"/api/v1/requests/{request_id}/").json()["plan_hash"]

    # The approver approves the plan they read; a hash of any other plan decides nothing.
    stale = approver.post(f"/api/v1/requests/{request_id}/approve/", {"plan_hash": "0" * 64}, format="json")
    assert stale.status_code == 409 and stale.json()["current_plan_hash"] == plan["plan_hash"]
    approved = approver.post(
        f"/api/v1/requests/{request_id}/approve/", {"comment": "ok", "plan_hash": plan["plan_hash"]}, format="json"
    )
    assert approved.status_code == 200, approved.json()

    active = wait_for_state(requester, request_id, "active", workers)
    assert active["plan_hash"] == seen
    assert active["role_arn"] == f"arn:aws:iam::{DATALAKE_ID}:role/{active['role_name']}"
    assert active["endpoint_arn"] in [e["EndpointArn"] for e in moto_world.endpoints("api-orders-postgres")]
    assert {step["status"] for step in active["steps"]} == {"succeeded"}
    assert active["allowed_actions"] == ["revoke"]
    events = requester.get("/api/v1/audit-events/", {"request": request_id}).json()["results"]
    assert events[0]["action"] == "request.active"

    revoking = requester.post(f"/api/v1/requests/{request_id}/revoke/", format="json")
    assert revoking.status_code == 200, revoking.json()
    wait_for_state(requester, request_id, "revoked", workers)
    assert moto_world.endpoints("api-orders-postgres") == []
    assert moto_world.role(active["role_name"]) is None


def _second_key(moto_world) -> str:
    policy = {"Version": "2012-10-17", "Statement": [ROOT_KEY_STATEMENT, FOREIGN_KEY_STATEMENT]}
    kms = moto_world.admin(REMOTE_ID, "kms")
    return kms.create_key(Description="rotated", Policy=json.dumps(policy))["KeyMetadata"]["Arn"]


def _key_policy(moto_world, key_arn: str) -> dict:
    kms = moto_world.admin(REMOTE_ID, "kms")
    return json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])


def _sids(policy: dict) -> set[str]:
    return {statement.get("Sid") for statement in policy.get("Statement", [])}


def test_plan_changed_after_approval_waits_for_reapproval_then_becomes_active(moto_world, workers):
    portal_accounts()
    requester, approver = client_for(REQUESTER), client_for(APPROVER)
    secrets = moto_world.admin(REMOTE_ID, "secretsmanager")
    body = {
        "datalake_account": DATALAKE_ID,
        "secret_arn": moto_world.secret_arn,
        "engine": "mysql",
        "endpoint_identifier": "api-rotated-mysql",
        "justification": "Nightly CDC of the orders database into the lake.",
    }
    filed = requester.post("/api/v1/requests/", body, format="json")
    assert filed.status_code == 201, filed.json()
    request_id = filed.json()["id"]
    seen = approver.get(f"/api/v1/requests/{request_id}/").json()["plan_hash"]
    first_key, second_key = moto_world.key_arn, _second_key(moto_world)
    first_policy, second_policy = _key_policy(moto_world, first_key), _key_policy(moto_world, second_key)
    # The Remote owners re-encrypt the secret after the approver looked: the workers start from AWS as it is then.
    secrets.update_secret(SecretId=moto_world.secret_arn, KmsKeyId=second_key)
    try:
        approved = approver.post(
            f"/api/v1/requests/{request_id}/approve/", {"comment": "ok", "plan_hash": seen}, format="json"
        )
        assert approved.status_code == 200, approved.json()

        waiting = wait_for_state(requester, request_id, "needs_reapproval", workers)
        assert waiting["diagnosis"] == "plan_changed"
        assert waiting["plan_hash"] != seen
        assert [d["counts"] for d in waiting["decisions"]] == [False]
        assert _key_policy(moto_world, first_key) == first_policy
        assert _key_policy(moto_world, second_key) == second_policy
        assert moto_world.role(waiting["role_name"]) is None and moto_world.endpoints("api-rotated-mysql") == []
        plan = approver.get(f"/api/v1/requests/{request_id}/plan/").json()
        assert plan["role_inline_policy"]["Statement"][1]["Resource"] == second_key
        queue = approver.get("/api/v1/requests/", {"awaiting_my_approval": "true"}).json()["results"]
        assert request_id in [row["id"] for row in queue]

        again = approver.post(
            f"/api/v1/requests/{request_id}/approve/",
            {"comment": "new key is fine", "plan_hash": waiting["plan_hash"]},
            format="json",
        )
        assert again.status_code == 200, again.json()
        active = wait_for_state(requester, request_id, "active", workers)
        key_step = next(step for step in active["steps"] if step["name"] == "grant_key_policy")
        assert [target["arn"] for target in key_step["targets"]] == [second_key]
        sid = key_step["targets"][0]["sid"]
        assert sid in _sids(_key_policy(moto_world, second_key))
        assert sid not in _sids(_key_policy(moto_world, first_key))

        revoking = requester.post(f"/api/v1/requests/{request_id}/revoke/", format="json")
        assert revoking.status_code == 200, revoking.json()
        wait_for_state(requester, request_id, "revoked", workers)
        assert _key_policy(moto_world, second_key) == second_policy
        assert _key_policy(moto_world, first_key) == first_policy
    finally:
        secrets.update_secret(SecretId=moto_world.secret_arn, KmsKeyId=first_key)
