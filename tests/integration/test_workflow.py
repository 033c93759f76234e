"""Approved requests carried out by real Celery workers against a moto server.

Each test approves requests in this process and waits for the workers (other
processes, sharing the test database and the Redis broker) to finish them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from django.db import transaction

from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep, ResourceLock
from requests_app.services import access_request_revoke, access_request_submit
from tests.integration.conftest import WORKER_SETTINGS, free_port
from tests.integration.processes import ROOT
from tests.integration.world import FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, ROOT_KEY_STATEMENT
from tests.requests_app.rows import DATALAKE_ID, REQUESTER, approve, portal_accounts, request_row, user

pytestmark = pytest.mark.django_db(transaction=True)
SETTLED = ("active", "failed")


def new_request(moto_world, endpoint_identifier: str, **fields) -> AccessRequest:
    """File the runbook's request through the service: validation, preflight against moto, plan."""
    portal_accounts()
    request = access_request_submit(
        requester=user(REQUESTER),
        datalake_account_id=DATALAKE_ID,
        secret_arn=moto_world.secret_arn,
        kms_key_arn=moto_world.key_arn,
        engine="mysql",
        endpoint_identifier=endpoint_identifier,
        justification="nightly replication of the orders database",
        **fields,
    )
    assert request.preflight_status == "passed", request.preflight
    return request


def request_for(moto_world, endpoint_identifier: str) -> AccessRequest:
    """A filed request written directly (preflight passed, no AWS calls): for
    tests about the workers rather than about filing."""
    return request_row(
        endpoint_identifier=endpoint_identifier,
        secret_arn=moto_world.secret_arn,
        kms_key_arn=moto_world.key_arn,
        resolved_kms_key_arn=moto_world.key_arn,
    )


def wait_until_settled(request_ids, workers, timeout: float = 60) -> dict[int, AccessRequest]:
    deadline = time.monotonic() + timeout
    while True:
        rows = AccessRequest.objects.in_bulk(list(request_ids))
        if all(row.state in SETTLED for row in rows.values()):
            return rows
        if time.monotonic() > deadline:
            states = {pk: row.state for pk, row in rows.items()}
            raise AssertionError(f"requests never settled: {states}\n{workers.logs()}")
        time.sleep(0.2)


def wait_until_final(request_id, state, workers, timeout: float = 60) -> AccessRequest:
    deadline = time.monotonic() + timeout
    while (request := AccessRequest.objects.get(pk=request_id)).state not in (state, "failed"):
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} is still {request.state}\n{workers.logs()}")
        time.sleep(0.2)
    assert request.state == state, (request.diagnosis, list(request.steps.values_list("name", "status", "error")))
    return request


def steps(request, phase="grant") -> dict[str, ProvisioningStep]:
    return {step.name: step for step in request.steps.filter(phase=phase)}


def principals(statement) -> set[str]:
    value = statement["Principal"]["AWS"] if isinstance(statement["Principal"], dict) else statement["Principal"]
    return {value} if isinstance(value, str) else set(value)


def actions_of(statement) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def sids(policy) -> list[str]:
    return [statement.get("Sid") for statement in policy["Statement"]]


def statement(policy, sid) -> dict:
    [found] = [item for item in policy["Statement"] if item.get("Sid") == sid]
    return found


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
    assert actions == [
        "request.submitted",
        "decision.approve",
        "request.approved",
        "request.provisioning",
        "step.preflight.passed",
        "aws.create_role",
        "aws.grant_secret_policy",
        "aws.grant_key_policy",
        "aws.create_endpoint",
        "step.verify.passed",
        "request.active",
    ]
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
    assert list(revoke_actions.values_list("action", flat=True)) == [
        "request.revoke_requested",
        "aws.delete_endpoint",
        "aws.revoke_key_policy",
        "aws.revoke_secret_policy",
        "aws.delete_role",
        "request.revoked",
    ]
    assert verify_chain().ok


def _last_event_of(request, action) -> int:
    return AuditEvent.objects.filter(request=request, action=action).latest("id").id


def test_twenty_grants_on_one_secret_and_key_all_keep_their_statements(moto_world, workers):
    requests = [request_for(moto_world, f"fleet-{n:02d}") for n in range(20)]
    # Approved together: all twenty tasks are sent at the same commit.
    with transaction.atomic():
        for request in requests:
            approve(request)

    settled = wait_until_settled([request.pk for request in requests], workers, timeout=90)

    assert {row.state for row in settled.values()} == {"active"}
    expected = {grant_spec_for(request).statement_sid for request in requests}
    secret_sids, key_sids = sids(moto_world.secret_policy()), sids(moto_world.key_policy())
    assert expected <= set(secret_sids) and expected <= set(key_sids)
    assert all(secret_sids.count(sid) == 1 and key_sids.count(sid) == 1 for sid in expected)
    assert FOREIGN_SECRET_STATEMENT in moto_world.secret_policy()["Statement"]
    assert ROOT_KEY_STATEMENT in moto_world.key_policy()["Statement"]
    assert FOREIGN_KEY_STATEMENT in moto_world.key_policy()["Statement"]
    # The workers serialised their merges on one lock row per shared policy.
    assert set(ResourceLock.objects.values_list("arn", flat=True)) >= {moto_world.secret_arn, moto_world.key_arn}
    assert verify_chain().ok


def test_worker_killed_mid_step_is_recovered_by_a_new_worker(moto_world, workers, faults):
    request = request_for(moto_world, "killed-mid-step")
    # create_endpoint writes to AWS, then its worker is killed before the
    # result is recorded: the re-run must find the endpoint, not add another.
    faults.set(request.pk, create_endpoint={"sleep_after": 60})
    approve(request)
    faults.wait_for_sleeping(request.pk, "create_endpoint")

    workers.kill_all()
    assert steps(request)["create_endpoint"].status == "running"
    workers.start(2)

    request = wait_until_settled([request.pk], workers)[request.pk]

    assert request.state == "active"
    assert steps(request)["create_endpoint"].attempts == 2
    [endpoint] = moto_world.endpoints("killed-mid-step")
    assert endpoint["EndpointArn"] == request.endpoint_arn
    assert moto_world.role(request.role_name)["Arn"] == request.role_arn
    sid = grant_spec_for(request).statement_sid
    assert sids(moto_world.secret_policy()).count(sid) == 1
    assert sids(moto_world.key_policy()).count(sid) == 1
    assert f"request {request.pk}: grant work was lost" in workers.logs(tail=None)


def test_request_approved_while_the_broker_is_down_is_picked_up_by_the_sweep(moto_world, workers, portal_env):
    request = request_for(moto_world, "broker-down")
    approve_in_web_process = (
        "from requests_app.models import AccessRequest; from tests.requests_app.rows import approve; "
        f"approve(AccessRequest.objects.get(pk={request.pk}))"
    )
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"

    web = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", approve_in_web_process],
        cwd=ROOT,
        env={**portal_env, "CELERY_BROKER_URL": dead_broker},
        capture_output=True,
        text=True,
        timeout=60,
    )

    # The approval stands even though nothing could be enqueued...
    assert web.returncode == 0, web.stderr
    assert f"could not enqueue grant work for request {request.pk}" in web.stderr
    # ...and the sweep, not the approval, gets the grant done.
    request = wait_until_settled([request.pk], workers)[request.pk]
    assert request.state == "active"
    assert f"request {request.pk}: grant work was lost" in workers.logs(tail=None)


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
