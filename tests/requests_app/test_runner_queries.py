"""Database round trips to claim and record a step.

Counted with Django's CaptureQueriesContext in a transactional test (no
savepoints of a wrapping test transaction). What is counted: every statement
of the claim (``_claim_ready_step``) and of the record (``_record_success``)
of a writing step, the audit append's included (the chain lock taken with the
read of the last hash, the insert: ``requests_app.audit``); not BEGIN and
COMMIT (one transaction each). Not counted: the engine call between them (its
lease heartbeat and before-write checks, the approved-plan check's approval
count), and the one-off moves (approved to provisioning, the phase's end).
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from provisioning.steps import table
from requests_app.models import AccessRequest, ProvisioningStep
from requests_app.workflow import runner
from tests.requests_app.fake_engine import FakeEngine, step_result
from tests.requests_app.rows import approved_request

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only audit trail keeps SQLite from flushing"),
]

CLAIM_AT_MOST = 2
RECORD_AT_MOST = 2
AUDIT_APPEND = 2


def statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]


def is_audit_append(sql: str) -> bool:
    return "audit_chain_head" in sql or AccessRequest._meta.app_label + "_auditevent" in sql


@pytest.fixture
def engine(monkeypatch):
    fake = FakeEngine()
    monkeypatch.setattr(runner, "engine_step", fake.step)
    monkeypatch.setattr(runner, "grant_clients_for", lambda spec, **_: object())
    return fake


@pytest.mark.parametrize("name", [s.name for s in table.steps_of(table.GRANT) if s.writes])
def test_a_writing_step_is_claimed_and_recorded_in_six_queries_with_its_audit_event(engine, enqueued, name):
    request = approved_request(endpoint_identifier="counted")
    # Everything before the step done, and the request provisioning: the
    # first claim's move out of approved is not the step's cost.
    while (claim := runner._claim_ready_step(request.pk, table.GRANT)[0])[1].name != name:
        runner._run_claimed(claim, final_attempt=False)
    ProvisioningStep.objects.filter(pk=claim[1].pk).update(status="pending", attempts=0, lease_expires_at=None)

    with CaptureQueriesContext(connection) as claiming:
        (request, step), _ = runner._claim_ready_step(request.pk, table.GRANT)
    result = engine.step(table.GRANT, name)(None)
    with CaptureQueriesContext(connection) as recording:
        runner._record_success(request, step, result)

    claim_queries = statements(claiming)
    record_queries = [sql for sql in statements(recording) if not is_audit_append(sql)]
    audit_queries = [sql for sql in statements(recording) if is_audit_append(sql)]
    # One transaction each.
    assert [q["sql"] for q in claiming.captured_queries].count("BEGIN") == 1
    assert [q["sql"] for q in recording.captured_queries].count("BEGIN") == 1
    assert step.name == name
    assert len(claim_queries) <= CLAIM_AT_MOST, claim_queries
    assert len(record_queries) <= RECORD_AT_MOST, record_queries
    assert len(audit_queries) == AUDIT_APPEND, audit_queries
    assert len(claim_queries) + len(record_queries) + len(audit_queries) <= 6
    assert request.steps.get(phase=table.GRANT, name=name).status == "succeeded"


def test_the_last_step_also_finishes_the_phase(engine, enqueued):
    """Verify's record moves the request to active: the move and its event come on top."""
    request = approved_request(endpoint_identifier="lastone")
    while (claim := runner._claim_ready_step(request.pk, table.GRANT)[0])[1].name != table.VERIFY:
        runner._run_claimed(claim, final_attempt=False)
    request, step = claim

    runner._record_success(request, step, step_result(table.VERIFY, changed=False, after={"allowed": True}))

    request.refresh_from_db()
    assert request.state == AccessRequest.State.ACTIVE
