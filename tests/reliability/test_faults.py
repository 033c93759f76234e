"""AWS misbehaving under the workers, injected at the botocore layer.

tests/integration/aws_faults.py sits in every worker between botocore and
the moto server and answers some HTTP attempts itself: "Rate exceeded",
HTTP 500 (with or without the call having reached AWS first), and, for a
few seconds after a role is created, "invalid principal" when a key or
secret policy names it, as KMS and Secrets Manager do while IAM propagates.
The workers run with the production retry budget (10 retries of a step)
and shortened waits between them (tests/reliability/conftest.py).

Faults AWS does not get over by itself (AccessDenied, a validation error)
must fail the step at once with its diagnosis: one attempt, no retry storm.
"""
from __future__ import annotations

import time
from collections import Counter

import pytest
from django.db import transaction

from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.models import ProvisioningStep
from tests.integration.outcomes import request_for, sids, steps, wait_until_settled
from tests.reliability.conftest import RETRY_BUDGET
from tests.requests_app.rows import approve

pytestmark = pytest.mark.django_db(transaction=True)

FAULT_PROFILE = {"throttle": 0.3, "server_error": 0.1, "lost_response": 0.05, "principal_delay": 6}


def call_figures(attempts: list[dict]) -> dict:
    calls = {entry["call"] for entry in attempts}
    faults = Counter(entry["fault"] for entry in attempts if entry["fault"])
    return {
        "aws_calls": len(calls),
        "http_attempts": len(attempts),
        "faults_injected": dict(sorted(faults.items())),
        "share_of_attempts_throttled": round(faults["throttle"] / len(attempts), 2) if attempts else 0,
    }


@pytest.mark.parametrize("size", [6, pytest.param(30, marks=pytest.mark.slow)])
def test_throttling_5xx_and_unseen_principals_are_outlasted_within_the_retry_budget(
    size, moto_world, workers, aws_faults, figures
):
    aws_faults.configure(**FAULT_PROFILE)
    requests = [request_for(moto_world, f"weather-{size}-{n:02d}") for n in range(size)]
    ids = [request.pk for request in requests]
    started = time.monotonic()
    with transaction.atomic():
        for request in requests:
            approve(request)

    settled = wait_until_settled(ids, workers, timeout=120 + 10 * size)
    seconds = time.monotonic() - started
    aws_faults.configure()

    step_attempts = list(
        ProvisioningStep.objects.filter(request_id__in=ids, phase="grant").values_list("attempts", flat=True)
    )
    attempts = aws_faults.attempts(ids)
    measured = call_figures(attempts)
    figures.record(
        requests=size,
        fault_profile=FAULT_PROFILE,
        **measured,
        step_runs=sum(step_attempts),
        step_retries=sum(step_attempts) - len(step_attempts),
        most_attempts_of_one_step=max(step_attempts),
        outcomes=dict(Counter(row.state for row in settled.values())),
        seconds=round(seconds, 1),
    )
    assert {pk: row.state for pk, row in settled.items()} == {pk: "active" for pk in ids}, {
        pk: (row.diagnosis, list(row.steps.exclude(status="succeeded").values_list("name", "error")))
        for pk, row in settled.items()
        if row.state != "active"
    }
    assert max(step_attempts) <= 1 + RETRY_BUDGET
    # Every kind of fault really happened, and was got over.
    assert set(measured["faults_injected"]) == {"throttle", "server_error", "lost_response", "invalid_principal"}
    for request in requests:
        sid = grant_spec_for(request).statement_sid
        assert sids(moto_world.secret_policy()).count(sid) == 1
        assert sids(moto_world.key_policy()).count(sid) == 1
        assert len(moto_world.endpoints(request.endpoint_identifier)) == 1
    assert verify_chain().ok


@pytest.mark.parametrize(
    ("fault", "operation", "step", "diagnosis", "says"),
    [
        ("deny", "PutKeyPolicy", "grant_key_policy", "provisioner_access_denied", "kms:PutKeyPolicy"),
        ("invalid", "CreateEndpoint", "create_endpoint", "aws_request_rejected", "1 validation error detected"),
    ],
)
def test_errors_retrying_cannot_mend_fail_the_step_at_once(
    fault, operation, step, diagnosis, says, moto_world, workers, aws_faults, figures
):
    request = request_for(moto_world, f"refused-{operation.lower()}")
    aws_faults.configure(**{fault: {str(request.pk): operation}})
    approve(request)

    request = wait_until_settled([request.pk], workers)[request.pk]
    calls_when_failed = len(aws_faults.attempts([request.pk]))
    time.sleep(3)  # three sweeps: a failed request must stay quiet
    attempts = aws_faults.attempts([request.pk])
    refused = [entry for entry in attempts if entry["op"].endswith(f":{operation}")]

    figures.record(
        injected=f"{fault} on {operation}",
        outcome=request.state,
        diagnosis=request.diagnosis,
        attempts_of_the_step=steps(request)[step].attempts,
        http_attempts_of_the_refused_call=len(refused),
        **call_figures(attempts),
    )
    assert (request.state, request.diagnosis) == ("failed", diagnosis)
    failed = steps(request)[step]
    assert (failed.status, failed.diagnosis, failed.attempts) == ("failed", diagnosis, 1)
    assert says in failed.error
    assert len(refused) == 1
    # Nothing but the refused call was repeated, and nothing ran after it.
    assert len(attempts) == len({entry["call"] for entry in attempts}) == calls_when_failed
    assert all(later.status == "pending" for later in steps(request).values() if later.position > failed.position)
