"""The step graph: which steps are ready, and the runner running the
independent ones side by side, each claimed, recorded and audited on its own."""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from provisioning.errors import PermanentAwsError
from provisioning.steps import table
from requests_app.audit import verify_chain
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep
from requests_app.workflow import runner
from tests.requests_app.fake_engine import FakeEngine
from tests.requests_app.rows import approved_request

GRANT, REVOKE = table.GRANT, table.REVOKE
POLICY_STEPS = (table.GRANT_SECRET_POLICY, table.GRANT_KEY_POLICY)
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="threads need their own connections to the same database"
)


@pytest.fixture
def engine(monkeypatch):
    fake = FakeEngine()
    monkeypatch.setattr(runner, "engine_step", fake.step)
    monkeypatch.setattr(runner, "grant_clients_for", lambda spec, **_: object())
    return fake


def steps_of(request, phase=GRANT) -> dict[str, ProvisioningStep]:
    return {step.name: step for step in request.steps.filter(phase=phase)}


# --- the table ---------------------------------------------------------------


def test_the_grant_graph_keeps_only_the_order_aws_requires():
    assert table.ready(GRANT, []) == (table.PREFLIGHT,)
    assert table.ready(GRANT, [table.PREFLIGHT]) == (table.CREATE_ROLE,)
    # Both policies name the role; neither needs the other.
    assert table.ready(GRANT, [table.PREFLIGHT, table.CREATE_ROLE]) == POLICY_STEPS
    # One policy done: the endpoint still waits for the other.
    assert table.ready(GRANT, [table.PREFLIGHT, table.CREATE_ROLE, table.GRANT_KEY_POLICY]) == (table.GRANT_SECRET_POLICY,)
    assert table.ready(GRANT, [table.PREFLIGHT, table.CREATE_ROLE, *POLICY_STEPS]) == (table.CREATE_ENDPOINT,)
    # Running (or failed) steps are not ready again.
    assert table.ready(GRANT, [table.PREFLIGHT, table.CREATE_ROLE], busy=[table.GRANT_SECRET_POLICY]) == (
        table.GRANT_KEY_POLICY,
    )
    assert table.ready(GRANT, table.names(GRANT)) == ()


def test_a_repair_runs_verify_only_after_the_step_it_put_back():
    # A repair resets preflight, the drifted step and verify; the other steps stay done.
    done = [table.CREATE_ROLE, table.GRANT_SECRET_POLICY, table.CREATE_ENDPOINT]
    assert table.ready(GRANT, done) == (table.PREFLIGHT,)
    assert table.ready(GRANT, [*done, table.PREFLIGHT]) == (table.GRANT_KEY_POLICY,)
    assert table.ready(GRANT, [*done, table.PREFLIGHT, table.GRANT_KEY_POLICY]) == (table.VERIFY,)
    assert table.upstream(table.VERIFY) == {table.PREFLIGHT, table.CREATE_ROLE, *POLICY_STEPS, table.CREATE_ENDPOINT}


def test_the_revoke_graph_is_the_grant_in_reverse():
    assert table.ready(REVOKE, []) == (table.DELETE_ENDPOINT,)
    assert set(table.ready(REVOKE, [table.DELETE_ENDPOINT])) == {table.REVOKE_KEY_POLICY, table.REVOKE_SECRET_POLICY}
    assert table.ready(REVOKE, [table.DELETE_ENDPOINT, table.REVOKE_KEY_POLICY]) == (table.REVOKE_SECRET_POLICY,)
    assert table.ready(REVOKE, [table.DELETE_ENDPOINT, table.REVOKE_KEY_POLICY, table.REVOKE_SECRET_POLICY]) == (
        table.DELETE_ROLE,
    )
    for resource in table.RESOURCES:
        grant, revoke = table.for_resource(GRANT, resource), table.for_resource(REVOKE, resource)
        assert (grant.side, grant.target, grant.locks) == (revoke.side, revoke.target, revoke.locks)
    assert {s.undoes for s in table.steps_of(REVOKE) if s.undoes} == set(POLICY_STEPS)


def test_every_step_is_described_once_and_the_table_refuses_a_cycle():
    assert len(table.BY_NAME) == len(table.STEPS)
    for step in table.STEPS:
        assert step.title and step.where and step.why and step.action
        assert step.phase in table.PHASES and step.side in (table.DATALAKE, table.REMOTE)
    assert "aws-facts.md §1" in table.step(table.CREATE_ENDPOINT).why
    first = table.step(table.CREATE_ROLE)
    with pytest.raises(ValueError, match="waits for"):
        table._check((table.step(table.PREFLIGHT), table.Step(**{**vars(first), "after": (table.VERIFY,)})))
    with pytest.raises(ValueError, match="twice"):
        table._check((table.step(table.PREFLIGHT), table.step(table.PREFLIGHT)))


def test_no_step_name_is_spelled_outside_the_table_and_the_engine():
    """The portal and the bench read the names from the table. Preflight is
    left out: it is also the name of the request's preflight report field."""
    root = Path(__file__).resolve().parents[2]
    allowed = {
        "provisioning/steps",  # the table and the engine functions (each names its StepResult)
        "provisioning/diagnoses.py",  # remediation prose naming a step
        "requests_app/logging_context.py",  # a docstring's example
        "requests_app/migrations",
    }
    spelled = []
    for folder in ("provisioning", "requests_app", "bench", "portal"):
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if any(relative == place or relative.startswith(place + "/") for place in allowed):
                continue
            text = path.read_text()
            spelled += [f"{relative}: {name}" for name in table.BY_NAME if name != table.PREFLIGHT and f'"{name}"' in text]
    assert spelled == []


# --- the runner ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@postgres_only
def test_the_two_policy_steps_run_at_the_same_time(engine, enqueued):
    """Each policy step waits inside the engine until the other has started:
    run one after the other, the first would wait in vain."""
    request = approved_request(endpoint_identifier="sidebyside")
    both_started = threading.Barrier(len(POLICY_STEPS), timeout=10)
    threads = {}

    def meet(spec):
        threads[threading.current_thread().name] = True
        both_started.wait()

    for name in POLICY_STEPS:
        engine.during_call[name] = meet

    ran = runner.run_steps(request.pk, GRANT)

    request.refresh_from_db()
    assert request.state == AccessRequest.State.ACTIVE
    assert set(ran) == set(table.names(GRANT)) and len(ran) == len(table.names(GRANT))
    assert len(threads) == 2
    steps = steps_of(request)
    secret, key = (steps[name] for name in POLICY_STEPS)
    assert secret.started_at < key.finished_at and key.started_at < secret.finished_at
    assert all(step.status == "succeeded" and step.attempts == 1 for step in steps.values())
    # Each recorded and audited on its own, and the chain stays linear.
    actions = list(AuditEvent.objects.filter(request=request).values_list("action", flat=True))
    assert actions.count("aws.grant_secret_policy") == actions.count("aws.grant_key_policy") == 1
    assert actions[-1] == "request.active"
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
@postgres_only
def test_a_failed_policy_step_stops_the_phase_and_its_sibling_is_still_recorded(engine, enqueued):
    request = approved_request(endpoint_identifier="onefails")
    both_started = threading.Barrier(2, timeout=10)
    for name in POLICY_STEPS:
        engine.during_call[name] = lambda spec: both_started.wait()
    engine.script(table.GRANT_KEY_POLICY, PermanentAwsError("key policy refused", diagnosis="key_policy_denies"))

    ran = runner.run_steps(request.pk, GRANT)

    request.refresh_from_db()
    steps = steps_of(request)
    assert request.state == AccessRequest.State.FAILED and request.diagnosis == "key_policy_denies"
    assert set(ran) == {table.PREFLIGHT, table.CREATE_ROLE, *POLICY_STEPS}
    assert steps[table.GRANT_SECRET_POLICY].status == "succeeded"
    assert steps[table.GRANT_KEY_POLICY].status == "failed"
    assert steps[table.CREATE_ENDPOINT].status == "pending" and table.CREATE_ENDPOINT not in engine.names_called()
    actions = list(AuditEvent.objects.filter(request=request).values_list("action", flat=True))
    assert "aws.grant_secret_policy" in actions and actions.count("request.failed") == 1
    # Nothing more to claim until someone retries.
    assert runner.run_steps(request.pk, GRANT) == []


@pytest.mark.django_db(transaction=True)
@postgres_only
def test_both_policy_steps_failing_fail_the_request_once(engine, enqueued):
    request = approved_request(endpoint_identifier="bothfail")
    both_started = threading.Barrier(2, timeout=10)
    for name in POLICY_STEPS:
        engine.during_call[name] = lambda spec: both_started.wait()
        engine.script(name, PermanentAwsError(f"{name} refused", diagnosis="provisioner_access_denied"))

    runner.run_steps(request.pk, GRANT)

    request.refresh_from_db()
    assert request.state == AccessRequest.State.FAILED
    assert {steps_of(request)[name].status for name in POLICY_STEPS} == {"failed"}
    assert AuditEvent.objects.filter(request=request, action="request.failed").count() == 1


@pytest.mark.django_db
def test_a_worker_killed_during_one_of_two_parallel_steps_resumes_at_that_step(engine, enqueued):
    """The worker ran both policy steps, recorded the secret's, and died in
    the key's: the next task takes over only the key step, then goes on."""
    request = approved_request(endpoint_identifier="resumes")
    claimed = []
    for _ in range(3):  # preflight, the role, then the two policy steps ready together
        claim, more = runner._claim_ready_step(request.pk, GRANT)
        claimed.append(claim)
        if claim[1].name in (table.PREFLIGHT, table.CREATE_ROLE):
            runner._run_claimed(claim, final_attempt=False)
    second, more = runner._claim_ready_step(request.pk, GRANT)
    assert more is False
    assert {claimed[-1][1].name, second[1].name} == set(POLICY_STEPS)
    secret = next(claim for claim in (claimed[-1], second) if claim[1].name == table.GRANT_SECRET_POLICY)
    runner._run_claimed(secret, final_attempt=False)
    # The key step's worker is gone: its lease runs out, nobody renews it.
    ProvisioningStep.objects.filter(request=request, name=table.GRANT_KEY_POLICY).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    engine.calls.clear()

    ran = runner.run_steps(request.pk, GRANT)

    request.refresh_from_db()
    assert ran == [table.GRANT_KEY_POLICY, table.CREATE_ENDPOINT, table.VERIFY]
    assert engine.names_called() == ran
    assert request.state == AccessRequest.State.ACTIVE
    steps = steps_of(request)
    assert steps[table.GRANT_KEY_POLICY].attempts == 2 and steps[table.GRANT_SECRET_POLICY].attempts == 1
    lapsed = AuditEvent.objects.get(request=request, action="step.lease_lapsed")
    assert lapsed.details["step"] == table.GRANT_KEY_POLICY and lapsed.details["lapsed_attempt"] == 1


@pytest.mark.django_db
def test_a_live_sibling_is_left_to_its_worker(engine, enqueued):
    """Another worker holds the secret step: this task takes the key step only."""
    request = approved_request(endpoint_identifier="shared")
    for name in (table.PREFLIGHT, table.CREATE_ROLE):
        runner._run_claimed(runner._claim_ready_step(request.pk, GRANT)[0], final_attempt=False)
    held, _ = runner._claim_ready_step(request.pk, GRANT)
    engine.calls.clear()

    ran = runner.run_steps(request.pk, GRANT)

    assert held[1].name == table.GRANT_SECRET_POLICY
    assert ran == [table.GRANT_KEY_POLICY]
    assert steps_of(request)[table.GRANT_SECRET_POLICY].status == "running"


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_saw_a_lapsed_lease_too_late_records_no_take_over(engine, enqueued):
    """Two workers sent the same lost work: the one that waited for the
    request row sees the steps as they were before the other's take-over.
    Its claim finds the step taken and it records nothing, not even a
    second ``step.lease_lapsed``."""
    request = approved_request(endpoint_identifier="stale-view")
    lapsed = timezone.now() - timedelta(seconds=1)
    ProvisioningStep.objects.filter(request=request, phase=GRANT, name=table.PREFLIGHT).update(
        status="running", attempts=1, started_at=lapsed - timedelta(minutes=5), lease_expires_at=lapsed
    )
    holding, waiting_started, outcome = threading.Event(), threading.Event(), {}

    def first_worker() -> None:
        # Holds the request row while the second worker starts its read.
        try:
            with transaction.atomic():
                AccessRequest.objects.select_for_update().get(pk=request.pk)
                holding.set()
                waiting_started.wait(timeout=10)
                time.sleep(0.5)  # the second worker's statement is now waiting for the row
                ProvisioningStep.objects.filter(request=request, phase=GRANT, name=table.PREFLIGHT).update(
                    attempts=2, lease_expires_at=timezone.now() + timedelta(minutes=5)
                )
        finally:
            connection.close()

    def second_worker() -> None:
        try:
            holding.wait(timeout=10)
            waiting_started.set()
            outcome["claim"] = runner._claim_ready_step(request.pk, GRANT)
        finally:
            connection.close()

    threads = [threading.Thread(target=first_worker), threading.Thread(target=second_worker)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert outcome["claim"] == (None, False)
    assert not AuditEvent.objects.filter(request=request, action="step.lease_lapsed").exists()
    assert ProvisioningStep.objects.get(request=request, phase=GRANT, name=table.PREFLIGHT).attempts == 2
