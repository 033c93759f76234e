"""Approved requests carried out by real Celery workers against a moto server.

Each test approves requests in this process and waits for the workers (other
processes, sharing the test database and the Redis broker) to finish them.
Grants racing on one secret, workers killed mid-step, AWS faults and broker
and database outages are in tests/reliability/.
"""
from __future__ import annotations

import json

import pytest

from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.models import AuditEvent
from requests_app.services import access_request_revoke
from tests.integration.conftest import WORKER_SETTINGS
from tests.integration.outcomes import (
    actions_of,
    new_request,
    principals,
    request_for,
    sids,
    statement,
    steps,
    wait_until_final,
    wait_until_settled,
)
from tests.integration.world import FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, ROOT_KEY_STATEMENT
from tests.requests_app.rows import DATALAKE_ID, REQUESTER, approve, user

pytestmark = pytest.mark.django_db(transaction=True)


def test_approved_request_ends_active_with_the_runbook_end_state(moto_world, workers):
    request = new_request(
        moto_world,
        "orders-mysql",
        role_name="dms-cross-account-secret-access",
        replication_instance_arn=moto_world.replication_instance_arn,
    )
    approve(request)

    request = wait_until_settled([request.pk], workers)[request.pk]

    assert request.state == "active", (request.diagnosis, [(s.name, s.status, s.error) for s in steps(request).values()])
    assert all(step.status == "succeeded" for step in steps(request).values())
    role_arn = f"arn:aws:iam::{DATALAKE_ID}:role/dms-cross-account-secret-access"
    sid = grant_spec_for(request).statement_sid

    role = moto_world.role("dms-cross-account-secret-access")
    assert role["Arn"] == request.role_arn == role_arn
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    [trust_statement] = trust["Statement"]
    assert "dms.amazonaws.com" in json.dumps(trust_statement["Principal"])
    assert trust_statement["Condition"]["StringEquals"]["aws:SourceAccount"] == DATALAKE_ID
    assert trust_statement["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:dms:eu-west-1:{DATALAKE_ID}:endpoint:*"
    [inline] = moto_world.inline_policies("dms-cross-account-secret-access").values()
    by_resource = {item["Resource"]: actions_of(item) for item in inline["Statement"]}
    assert by_resource[moto_world.secret_arn] >= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    assert "kms:Decrypt" in by_resource[request.resolved_kms_key_arn]

    secret_policy = moto_world.secret_policy()
    assert principals(statement(secret_policy, sid)) == {role_arn}
    assert actions_of(statement(secret_policy, sid)) >= {"secretsmanager:GetSecretValue"}
    assert FOREIGN_SECRET_STATEMENT in secret_policy["Statement"]

    key_policy = moto_world.key_policy()
    assert key_policy["Statement"][0] == ROOT_KEY_STATEMENT
    assert FOREIGN_KEY_STATEMENT in key_policy["Statement"]
    key_statement = statement(key_policy, sid)
    assert principals(key_statement) == {role_arn}
    assert "kms:Decrypt" in actions_of(key_statement)
    assert key_statement["Condition"]["StringEquals"]["kms:ViaService"] == "secretsmanager.eu-west-1.amazonaws.com"

    [endpoint] = moto_world.endpoints("orders-mysql")
    assert endpoint["EndpointArn"] == request.endpoint_arn
    assert endpoint["MySQLSettings"]["SecretsManagerAccessRoleArn"] == role_arn
    assert endpoint["MySQLSettings"]["SecretsManagerSecretId"] == moto_world.secret_arn
    assert not {"Username", "Password", "ServerName"} & set(endpoint)
    assert not {"Username", "Password", "ServerName", "Port"} & set(endpoint["MySQLSettings"])

    actions = list(AuditEvent.objects.filter(request=request).values_list("action", flat=True))
    # The two policy steps run side by side: their events come in either order.
    assert actions[:6] == [
        "request.submitted",
        "decision.approve",
        "request.approved",
        "request.provisioning",
        "step.preflight.passed",
        "aws.create_role",
    ]
    assert sorted(actions[6:8]) == ["aws.grant_key_policy", "aws.grant_secret_policy"]
    assert actions[8:] == ["aws.create_endpoint", "step.verify.passed", "request.active"]
    key_event = AuditEvent.objects.get(request=request, action="aws.grant_key_policy")
    assert key_event.target_arn == request.resolved_kms_key_arn
    assert sid not in sids(key_event.details["before"]) and sid in sids(key_event.details["after"])
    assert verify_chain().ok


def test_revoke_takes_the_grant_back_out_of_aws_and_leaves_the_rest(moto_world, workers):
    request = new_request(moto_world, "revoked-later")
    approve(request)
    wait_until_settled([request.pk], workers)
    sid = grant_spec_for(request).statement_sid
    assert sid in sids(moto_world.secret_policy())

    access_request_revoke(request_id=request.pk, user=user(REQUESTER))
    request = wait_until_final(request.pk, "revoked", workers)

    assert all(step.status == "succeeded" for step in steps(request, "revoke").values())
    assert moto_world.role(request.role_name) is None
    assert moto_world.endpoints("revoked-later") == []
    secret_policy, key_policy = moto_world.secret_policy(), moto_world.key_policy()
    assert sid not in sids(secret_policy) and sid not in sids(key_policy)
    assert FOREIGN_SECRET_STATEMENT in secret_policy["Statement"]
    assert key_policy["Statement"][0] == ROOT_KEY_STATEMENT and FOREIGN_KEY_STATEMENT in key_policy["Statement"]
    revoke_actions = AuditEvent.objects.filter(request=request, id__gt=_last_event_of(request, "request.active"))
    revoke_actions = list(revoke_actions.values_list("action", flat=True))
    assert revoke_actions[:2] == ["request.revoke_requested", "aws.delete_endpoint"]
    assert sorted(revoke_actions[2:4]) == ["aws.revoke_key_policy", "aws.revoke_secret_policy"]
    assert revoke_actions[4:] == ["aws.delete_role", "request.revoked"]
    assert verify_chain().ok


def _last_event_of(request, action) -> int:
    return AuditEvent.objects.filter(request=request, action=action).latest("id").id


def test_retryable_error_is_retried_until_the_step_succeeds(moto_world, workers, faults):
    request = request_for(moto_world, "flaky-principal")
    faults.set(request.pk, grant_secret_policy={"retryable": 2})
    approve(request)

    request = wait_until_settled([request.pk], workers)[request.pk]

    assert request.state == "active"
    step = steps(request)["grant_secret_policy"]
    assert (step.status, step.attempts) == ("succeeded", 3)


def test_retryable_error_that_outlasts_the_budget_fails_with_its_diagnosis(moto_world, workers, faults):
    request = request_for(moto_world, "never-visible")
    faults.set(request.pk, grant_key_policy={"retryable": 99})
    approve(request)

    request = wait_until_settled([request.pk], workers)[request.pk]

    assert (request.state, request.diagnosis) == ("failed", "principal_not_visible")
    step = steps(request)["grant_key_policy"]
    assert (step.status, step.diagnosis) == ("failed", "principal_not_visible")
    assert step.attempts == 1 + int(WORKER_SETTINGS["PROVISIONING_RETRY_MAX_RETRIES"])
    assert steps(request)["create_endpoint"].status == "pending"
    assert moto_world.endpoints("never-visible") == []


def test_permanent_error_fails_at_once_without_retry(moto_world, workers, faults):
    request = request_for(moto_world, "access-denied")
    faults.set(request.pk, create_role={"permanent": "provisioner_access_denied"})
    approve(request)

    request = wait_until_settled([request.pk], workers)[request.pk]

    assert (request.state, request.diagnosis) == ("failed", "provisioner_access_denied")
    step = steps(request)["create_role"]
    assert (step.status, step.attempts) == ("failed", 1)
    assert moto_world.role(request.role_name) is None
