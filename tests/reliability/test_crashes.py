"""Workers SIGKILLed at every step boundary, then restarted.

The worst moment to die is after a step changed AWS and before its result
was recorded: the database still says "running", AWS already holds the
change. For each step a request stops right there (tests/integration/
fault_hooks.py ``sleep_after``), the workers are killed with SIGKILL, new
ones start, and the sweep hands the lost step to them once its lease has
run out. Every request must end where it would have without the crash:
active with exactly one role, one endpoint and one statement in each remote
policy (revoked, with none of them, for the revoke steps), the re-run step
having written nothing, and the audit chain intact.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import F

from provisioning.ownership import owner_tags
from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.models import AuditEvent, ProvisioningStep
from requests_app.services import access_request_revoke
from requests_app.workflow import STEP_NAMES
from tests.integration.outcomes import request_for, sids, steps, wait_until_final, wait_until_settled
from tests.integration.world import FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, ROOT_KEY_STATEMENT
from tests.reliability.conftest import LEASE_SECONDS
from tests.requests_app.rows import DATALAKE_ID, REQUESTER, approve, user

pytestmark = pytest.mark.django_db(transaction=True)

GRANT_STEPS = STEP_NAMES["grant"]
REVOKE_STEPS = STEP_NAMES["revoke"]
# Steps that only read AWS: their re-run has nothing to leave unchanged.
READ_ONLY_STEPS = {"preflight", "verify"}


def lease_runs_out() -> None:
    """As if the lease of every step still marked running had expired.

    The shared workers' lease is long, so no stopped step is taken over while
    the others are still on their way to their stop; after the kill, the
    killed steps' start moves back by one lease instead of the test waiting
    for it."""
    ProvisioningStep.objects.filter(status=ProvisioningStep.Status.RUNNING).update(
        started_at=F("started_at") - timedelta(seconds=LEASE_SECONDS)
    )


def roles_tagged_for(moto_world, request) -> list[str]:
    """Names of the DataLake roles carrying this request's owner tag."""
    iam = moto_world.admin(DATALAKE_ID, "iam")
    names = []
    for role in iam.list_roles()["Roles"]:
        tags = iam.list_role_tags(RoleName=role["RoleName"])["Tags"]
        if all(tag in tags for tag in owner_tags(grant_spec_for(request))):
            names.append(role["RoleName"])
    return names


def assert_granted_once(moto_world, request) -> None:
    assert roles_tagged_for(moto_world, request) == [request.role_name]
    assert moto_world.role(request.role_name)["Arn"] == request.role_arn
    [endpoint] = moto_world.endpoints(request.endpoint_identifier)
    assert endpoint["EndpointArn"] == request.endpoint_arn
    sid = grant_spec_for(request).statement_sid
    assert sids(moto_world.secret_policy()).count(sid) == 1
    assert sids(moto_world.key_policy()).count(sid) == 1


def assert_revoked_completely(moto_world, request) -> None:
    assert roles_tagged_for(moto_world, request) == []
    assert moto_world.endpoints(request.endpoint_identifier) == []
    sid = grant_spec_for(request).statement_sid
    assert sid not in sids(moto_world.secret_policy()) and sid not in sids(moto_world.key_policy())


def assert_foreign_statements_intact(moto_world) -> None:
    assert FOREIGN_SECRET_STATEMENT in moto_world.secret_policy()["Statement"]
    key_statements = moto_world.key_policy()["Statement"]
    assert key_statements[0] == ROOT_KEY_STATEMENT and FOREIGN_KEY_STATEMENT in key_statements


def rerun_wrote_nothing(request, phase: str, name: str) -> bool:
    """The second attempt of the step recorded 'unchanged' (or only read, for read-only steps)."""
    events = AuditEvent.objects.filter(request=request, details__step=name, details__phase=phase)
    second = [event.action for event in events if event.details.get("attempt") == 2]
    if name in READ_ONLY_STEPS:
        return len(second) == 1
    return second == [f"step.{name}.unchanged"]


def kill_and_restart(workers) -> int:
    """SIGKILL every worker (and its pool), start two new ones; returns how many were killed."""
    killed = len(workers.workers)
    workers.kill_all()
    lease_runs_out()
    workers.start(2)
    return killed


def test_workers_killed_with_a_request_stopped_at_each_grant_step_recover_them_all(
    moto_world, workers, faults, figures
):
    requests = {name: request_for(moto_world, f"crash-at-{name.replace('_', '-')}") for name in GRANT_STEPS}
    for name, request in requests.items():
        faults.set(request.pk, **{name: {"sleep_after": 120}})
    with transaction.atomic():
        for request in requests.values():
            approve(request)
    for name, request in requests.items():
        faults.wait_for_sleeping(request.pk, name, timeout=90)
    assert all(steps(request)[name].status == "running" for name, request in requests.items())

    started = time.monotonic()
    killed = kill_and_restart(workers)
    settled = wait_until_settled([request.pk for request in requests.values()], workers, timeout=120)
    recovery = time.monotonic() - started

    outcomes = {name: settled[request.pk] for name, request in requests.items()}
    figures.record(
        requests=len(requests),
        step_boundaries=list(requests),
        worker_processes_killed=killed,
        active=sum(row.state == "active" for row in outcomes.values()),
        seconds_from_kill_to_all_active=round(recovery, 1),
    )
    assert {name: row.state for name, row in outcomes.items()} == {name: "active" for name in GRANT_STEPS}
    for name, request in outcomes.items():
        assert steps(request)[name].attempts == 2, name
        assert rerun_wrote_nothing(request, "grant", name), name
        assert_granted_once(moto_world, request)
    assert_foreign_statements_intact(moto_world)
    assert verify_chain().ok


@pytest.mark.slow
@pytest.mark.parametrize(
    ("phase", "name"), [("grant", name) for name in GRANT_STEPS] + [("revoke", name) for name in REVOKE_STEPS]
)
def test_worker_killed_at_one_step_boundary_then_restarted(phase, name, moto_world, workers, faults, figures):
    request = request_for(moto_world, f"killed-{phase}-{name.replace('_', '-')}")
    if phase == "revoke":
        approve(request)
        wait_until_settled([request.pk], workers)
        faults.set(request.pk, **{name: {"sleep_after": 120}})
        access_request_revoke(request_id=request.pk, user=user(REQUESTER))
    else:
        faults.set(request.pk, **{name: {"sleep_after": 120}})
        approve(request)
    faults.wait_for_sleeping(request.pk, name, timeout=60)

    started = time.monotonic()
    killed = kill_and_restart(workers)
    request = wait_until_final(request.pk, "active" if phase == "grant" else "revoked", workers, timeout=90)

    figures.record(
        worker_processes_killed=killed,
        outcome=request.state,
        attempts_of_the_killed_step=steps(request, phase)[name].attempts,
        seconds_from_kill_to_outcome=round(time.monotonic() - started, 1),
    )
    assert steps(request, phase)[name].attempts == 2
    assert rerun_wrote_nothing(request, phase, name)
    if phase == "grant":
        assert_granted_once(moto_world, request)
    else:
        assert_revoked_completely(moto_world, request)
    assert_foreign_statements_intact(moto_world)
    assert verify_chain().ok
