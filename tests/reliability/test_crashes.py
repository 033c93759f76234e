"""Whole workers SIGKILLed, or paused, with the portal's production timing.

The worst moment to die is after a step changed AWS and before its result
was recorded: the database still says "running", AWS already holds the
change. Requests stop right there (tests/integration/fault_hooks.py
``sleep_after``), and the whole worker (main process and pool) is killed with
SIGKILL, beat with it, as when a host or container dies; new ones start. Nothing
is moved back by hand: the killed steps' leases lapse on their own (no
heartbeat renews them), the sweep finds them and the new workers take them
over. Every request must end where it would have without the crash: active
with exactly one role, one endpoint and one statement in each remote policy,
the re-run step having written nothing, no step run by two workers at once
(the audit trail shows each re-run started after the lease it replaced ran
out, and only the attempt that held the step recorded anything), and the
audit chain intact.

The workers here run with the production defaults of portal/settings.py
(lease, heartbeat, write margin, sweep interval, stall time, retry backoff,
Redis visibility timeout), not the shrunken ones of the other live tests.
"""
from __future__ import annotations

import io
import time
import uuid
from collections import Counter
from datetime import datetime

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction

from provisioning.ownership import owner_tags
from provisioning.steps import table
from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep
from requests_app.services import access_request_revoke
from tests.integration.outcomes import request_for, sids, steps, wait_until_final, wait_until_settled
from tests.integration.processes import CeleryProcess, WorkerPool
from tests.integration.world import FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, ROOT_KEY_STATEMENT
from tests.provisioning.botocore_hooks import is_write
from tests.requests_app.rows import DATALAKE_ID, REQUESTER, approve, user

pytestmark = pytest.mark.django_db(transaction=True)

GRANT_STEPS = table.names("grant")
REVOKE_STEPS = table.names("revoke")
# Steps that only read AWS: their re-run has nothing to leave unchanged.
READ_ONLY_STEPS = {"preflight", "verify"}
# What the live tests elsewhere shrink; left out here, so portal/settings.py's defaults apply.
TIMING_SETTINGS = (
    "PROVISIONING_STEP_LEASE_SECONDS",
    "PROVISIONING_STEP_HEARTBEAT_SECONDS",
    "PROVISIONING_STEP_WRITE_MARGIN_SECONDS",
    "PROVISIONING_STALL_SECONDS",
    "PROVISIONING_SWEEP_INTERVAL_SECONDS",
    "PROVISIONING_RETRY_BACKOFF",
    "PROVISIONING_RETRY_BACKOFF_MAX",
    "PROVISIONING_RETRY_MAX_RETRIES",
    "CELERY_VISIBILITY_TIMEOUT_SECONDS",
)
# Recovery goal: every grant active this soon after the new workers started.
RECOVERY_GOAL_SECONDS = 60


class Host:
    """Workers and beat as on one host: killed together, started again together."""

    def __init__(self, env: dict[str, str], log_dir, *, concurrency: int):
        self.env = env
        self.log_dir = log_dir
        self.pool = WorkerPool(env, log_dir, concurrency=concurrency)
        self.beat: CeleryProcess | None = None

    @property
    def workers(self) -> list[CeleryProcess]:
        return self.pool.workers

    def start(self, workers: int = 2, *, beat: bool = True) -> None:
        self.pool.start(workers)
        if beat:
            self.start_beat()

    def start_beat(self) -> None:
        # A new host: a fresh beat schedule, as nothing of the dead one survives.
        name = f"beat-{uuid.uuid4().hex[:8]}"
        self.beat = CeleryProcess(
            ["beat", "-s", str(self.log_dir / f"{name}.schedule"), "--loglevel=INFO"], self.env, self.log_dir / f"{name}.log"
        )
        self.beat.wait_for_log("beat: Starting...")

    def kill(self) -> int:
        """SIGKILL every worker (main process and pool) and beat; returns how many workers died."""
        killed = len(self.pool.workers)
        self.pool.kill_all()
        if self.beat is not None:
            self.beat.kill()
            self.beat = None
        return killed

    def stop(self) -> None:
        self.pool.stop_all(also=[self.beat] if self.beat else [])
        self.beat = None

    def worker_of(self, pid: int) -> CeleryProcess:
        [worker] = [worker for worker in self.pool.workers if worker.process.pid == pid]
        return worker

    def logs(self, tail: int | None = 4000) -> str:
        return self.pool.logs(tail)


@pytest.fixture(scope="module")
def production_env(portal_env) -> dict[str, str]:
    return {name: value for name, value in portal_env.items() if name not in TIMING_SETTINGS}


@pytest.fixture(scope="module")
def host(shared_workers, production_env, worker_log_dir):
    """Two workers of four pool processes each, and beat, with the production
    timing. The package's shared workers (a long lease of their own) stop
    meanwhile, so that no worker with other settings claims a step here."""
    shared_workers.stop_all()
    host = Host(production_env, worker_log_dir, concurrency=4)
    try:
        host.start(2)
        yield host
    finally:
        host.stop()
        shared_workers.start(2)


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
    second = [event.action for event in events if event.details.get("attempt") == 2 and event.action != "step.lease_lapsed"]
    if name in READ_ONLY_STEPS:
        return len(second) == 1
    return second == [f"step.{name}.unchanged"]


def assert_no_step_ran_twice_at_once(request) -> list[float]:
    """From the audit trail: every re-run of a step began after the lease of
    the attempt it replaced had run out, one re-run per lapsed attempt, and
    only the attempt holding the step recorded what it did. Returns, for each
    take-over, the seconds from the lapse to the take-over."""
    delays = []
    events = list(AuditEvent.objects.filter(request=request).order_by("id"))
    for step in request.steps.all():
        mine = [e for e in events if e.details.get("step") == step.name and e.details.get("phase") == step.phase]
        takeovers = [e for e in mine if e.action == "step.lease_lapsed"]
        assert len(takeovers) == step.attempts - 1, (step.name, [e.action for e in mine])
        for event in takeovers:
            lapsed = datetime.fromisoformat(event.details["lease_expired_at"])
            assert event.created_at > lapsed, (step.name, event.details)
            assert event.details["attempt"] == event.details["lapsed_attempt"] + 1
            delays.append((event.created_at - lapsed).total_seconds())
        recorded = {e.details["attempt"] for e in mine if e.action != "step.lease_lapsed" and e.action.startswith(("aws.", "step."))}
        assert recorded <= {step.attempts}, (step.name, recorded, step.attempts)
    return delays


def chain_verified() -> bool:
    """The chain checks out, by the function and by the operators' command."""
    call_command("verify_audit_chain", stdout=io.StringIO())
    return verify_chain().ok


def test_whole_worker_killed_mid_way_resumes_every_grant_within_a_minute(
    moto_world, host, faults, aws_faults, figures
):
    """The operator's scenario: twenty grants on one secret approved at once,
    the whole worker and beat killed mid-way (six of them stopped right after
    each grant step wrote AWS, others wherever they were), new workers started.
    Beat stays dead until every grant is active: the workers' own sweep finds
    the lapsed leases."""
    size = 20
    requests = [request_for(moto_world, f"host-crash-{n:02d}") for n in range(size)]
    ids = [request.pk for request in requests]
    stopped = {name: requests[3 * position] for position, name in enumerate(GRANT_STEPS)}
    for name, request in stopped.items():
        faults.set(request.pk, **{name: {"sleep_after": 600}})
    with transaction.atomic():
        for request in requests:
            approve(request)
    for name, request in stopped.items():
        faults.wait_for_sleeping(request.pk, name, timeout=90)

    states_at_kill = Counter(AccessRequest.objects.filter(pk__in=ids).values_list("state", flat=True))
    running_at_kill = ProvisioningStep.objects.filter(request_id__in=ids, status="running").count()
    killed_at = time.monotonic()
    killed = host.kill()
    host.start(2, beat=False)
    started_at = time.monotonic()
    try:
        settled = wait_until_settled(ids, host, timeout=RECOVERY_GOAL_SECONDS + 60)
        settled_at = time.monotonic()
    finally:
        host.start_beat()

    delays = [delay for row in settled.values() for delay in assert_no_step_ran_twice_at_once(row)]
    figures.record(
        requests=size,
        worker_processes_killed=killed,
        beat_killed=True,
        beat_restarted=False,
        pool_processes_per_worker=host.pool.concurrency,
        states_at_kill=dict(states_at_kill),
        steps_running_at_kill=running_at_kill,
        lease_seconds=settings.PROVISIONING_STEP_LEASE_SECONDS,
        heartbeat_seconds=settings.PROVISIONING_STEP_HEARTBEAT_SECONDS,
        sweep_interval_seconds=settings.PROVISIONING_SWEEP_INTERVAL_SECONDS,
        seconds_to_restart_workers=round(started_at - killed_at, 1),
        seconds_from_kill_to_all_active=round(settled_at - killed_at, 1),
        seconds_from_restart_to_all_active=round(settled_at - started_at, 1),
        steps_taken_over=len(delays),
        most_seconds_from_lease_lapse_to_takeover=round(max(delays, default=0), 1),
        active=sum(row.state == "active" for row in settled.values()),
    )
    assert {row.state for row in settled.values()} == {"active"}
    assert settled_at - started_at <= RECOVERY_GOAL_SECONDS
    assert len(delays) >= len(stopped)  # each stopped step was taken over, not waited for
    for name, request in stopped.items():
        request = settled[request.pk]
        assert steps(request)[name].attempts == 2, name
        assert rerun_wrote_nothing(request, "grant", name), name
    for request in settled.values():
        assert_granted_once(moto_world, request)
    expected = {grant_spec_for(request).statement_sid for request in settled.values()}
    secret_sids, key_sids = sids(moto_world.secret_policy()), sids(moto_world.key_policy())
    assert all(secret_sids.count(sid) == 1 and key_sids.count(sid) == 1 for sid in expected)
    assert_foreign_statements_intact(moto_world)
    assert chain_verified()


def test_worker_paused_past_its_lease_writes_nothing_once_its_step_was_taken_over(
    moto_world, host, faults, aws_faults, figures
):
    """SIGSTOP a whole worker right after it claimed a secret policy write; the
    other worker takes the step over once the lease ran out and finishes the
    grant, which is then revoked. SIGCONT: the resumed worker reads the policy
    (its statement gone again), and stops before the write that would put the
    revoked grant back."""
    name = "grant_secret_policy"
    request = request_for(moto_world, "paused-worker")
    faults.set(request.pk, **{name: {"sleep_before": 2}})
    approve(request)
    faults.wait_for_sleeping(request.pk, name, timeout=60)
    sleeper = faults.sleeper(request.pk, name)
    paused = host.worker_of(sleeper["ppid"])
    paused.pause()
    paused_at = time.time()
    try:
        wait_until_final(request.pk, "active", host, timeout=90)
        taken_over_at = time.time()
        access_request_revoke(request_id=request.pk, user=user(REQUESTER))
        request = wait_until_final(request.pk, "revoked", host, timeout=60)
    finally:
        paused.resume()
    resumed_at = time.time()
    paused.wait_for_log("Stopped before secretsmanager:PutResourcePolicy", timeout=30)

    calls = [entry for entry in aws_faults.attempts([request.pk]) if entry["pid"] == sleeper["pid"]]
    after_resume = [entry["op"] for entry in calls if entry["at"] >= resumed_at]
    writes_after_pause = [entry["op"] for entry in calls if entry["at"] >= paused_at and is_write(entry["op"].split(":")[1])]
    delays = assert_no_step_ran_twice_at_once(request)
    figures.record(
        lease_seconds=settings.PROVISIONING_STEP_LEASE_SECONDS,
        seconds_paused=round(resumed_at - paused_at, 1),
        seconds_from_pause_to_grant_active_by_the_other_worker=round(taken_over_at - paused_at, 1),
        aws_calls_of_the_resumed_worker=after_resume,
        aws_writes_of_the_resumed_worker=len(writes_after_pause),
    )
    assert resumed_at - paused_at > settings.PROVISIONING_STEP_LEASE_SECONDS
    assert "secretsmanager:GetResourcePolicy" in after_resume, "the resumed worker never ran on"
    assert writes_after_pause == []
    assert steps(request)[name].attempts == 2 and len(delays) == 1
    assert request.state == "revoked"
    assert_revoked_completely(moto_world, request)
    assert_foreign_statements_intact(moto_world)
    assert chain_verified()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("phase", "name"), [("grant", name) for name in GRANT_STEPS] + [("revoke", name) for name in REVOKE_STEPS]
)
def test_worker_killed_at_one_step_boundary_then_restarted(phase, name, moto_world, host, faults, figures):
    request = request_for(moto_world, f"killed-{phase}-{name.replace('_', '-')}")
    if phase == "revoke":
        approve(request)
        wait_until_settled([request.pk], host)
        faults.set(request.pk, **{name: {"sleep_after": 600}})
        access_request_revoke(request_id=request.pk, user=user(REQUESTER))
    else:
        faults.set(request.pk, **{name: {"sleep_after": 600}})
        approve(request)
    faults.wait_for_sleeping(request.pk, name, timeout=60)

    killed_at = time.monotonic()
    killed = host.kill()
    host.start(2)
    started_at = time.monotonic()
    request = wait_until_final(request.pk, "active" if phase == "grant" else "revoked", host, timeout=RECOVERY_GOAL_SECONDS + 30)

    figures.record(
        worker_processes_killed=killed,
        outcome=request.state,
        attempts_of_the_killed_step=steps(request, phase)[name].attempts,
        seconds_from_kill_to_outcome=round(time.monotonic() - killed_at, 1),
        seconds_from_restart_to_outcome=round(time.monotonic() - started_at, 1),
    )
    assert time.monotonic() - started_at <= RECOVERY_GOAL_SECONDS
    assert steps(request, phase)[name].attempts == 2
    assert rerun_wrote_nothing(request, phase, name)
    assert_no_step_ran_twice_at_once(request)
    if phase == "grant":
        assert_granted_once(moto_world, request)
    else:
        assert_revoked_completely(moto_world, request)
    assert_foreign_statements_intact(moto_world)
    assert verify_chain().ok


def test_a_request_sets_grants_wait_for_a_killed_role_step_then_write_each_policy_once(moto_world, host, faults):
    """Six grants of one request set on one secret and key: one grant's
    create_role stops right after it created the role, and the other five,
    their roles made, wait for it before any policy write. The whole worker is
    killed. The new workers take the role step over once its lease lapses;
    the grants then write the secret policy and the key policy once each,
    every grant's statement in that one put."""
    from requests_app.models import RequestSet
    from requests_app.services import request_set_approve
    from requests_app.set_plans import awaiting_grants, set_plan_hash
    from tests.requests_app.rows import APPROVER, portal_accounts

    datalake, remote = portal_accounts()
    request_set = RequestSet.objects.create(
        requester=user(REQUESTER), datalake_account=datalake, remote_account=remote, justification="six databases"
    )
    requests = [request_for(moto_world, f"set-crash-{n}") for n in range(6)]
    ids = [request.pk for request in requests]
    AccessRequest.objects.filter(pk__in=ids).update(request_set=request_set)
    slow = requests[2]
    faults.set(slow.pk, create_role={"sleep_after": 600})
    request_set_approve(
        set_id=request_set.pk, user=user(APPROVER), plan_hash=set_plan_hash(awaiting_grants(request_set))
    )
    faults.wait_for_sleeping(slow.pk, "create_role", timeout=90)
    others = ProvisioningStep.objects.filter(request_id__in=set(ids) - {slow.pk}, name="create_role")
    deadline = time.monotonic() + 60
    while others.exclude(status="succeeded").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not others.exclude(status="succeeded").exists(), host.logs()
    time.sleep(2)  # time enough for a policy step that would not wait to start
    writes = ProvisioningStep.objects.filter(request_id__in=ids, name__in=table.merged("grant"))
    assert set(writes.values_list("status", flat=True)) == {"pending"}

    host.kill()
    host.start(2, beat=False)
    try:
        settled = wait_until_settled(ids, host, timeout=RECOVERY_GOAL_SECONDS + 60)
    finally:
        host.start_beat()

    assert {row.state for row in settled.values()} == {"active"}, host.logs()
    assert steps(settled[slow.pk])["create_role"].attempts == 2
    assert rerun_wrote_nothing(settled[slow.pk], "grant", "create_role")
    calls = Counter(
        call["event_name"]
        for details in AuditEvent.objects.filter(request_id__in=ids).values_list("details", flat=True)
        for call in details.get("aws_calls", [])
    )
    assert (calls["PutResourcePolicy"], calls["PutKeyPolicy"]) == (1, 1), calls
    for request in settled.values():
        assert_granted_once(moto_world, request)
    assert_foreign_statements_intact(moto_world)
    assert chain_verified()
