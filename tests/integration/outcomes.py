"""Driving requests through the harness's real workers and reading the outcome:
filing and approving, waiting for the workers to settle them, and reading
the statements the grants left in the remote policies.
"""
from __future__ import annotations

import time

from requests_app.models import AccessRequest, ProvisioningStep
from requests_app.services import access_request_submit
from tests.requests_app.rows import DATALAKE_ID, REQUESTER, portal_accounts, request_row, user

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
