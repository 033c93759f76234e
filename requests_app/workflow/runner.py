"""Running a request's engine steps and recording what they did.

The steps of a phase form a graph (``provisioning.steps.table``): a step is
*ready* once every step it waits for succeeded, and ready steps run side by
side. Each step is still claimed, run and recorded on its own:

1. In a short transaction holding the request row: pick a ready step that
   nobody holds, claim it (running, attempts + 1, a lease) and commit, so the
   claim is visible to every other worker before AWS is touched.
2. Call the engine step with no transaction open: AWS calls can be slow, and
   a transaction held across them would hold row locks just as long. The
   claim is a short lease (requests_app.workflow.leases) that a heartbeat
   renews while the step runs; right before each AWS write the step checks
   that it still holds it, and stops if another worker took the step over.
3. In one transaction holding the request row: record the result, the audit
   event and, once every step of the phase succeeded, the request's new state.

``run_steps`` is what a worker does for one ``provisioning.run_step`` task:
it claims the ready steps one by one, runs them (in threads of their own
when there are several: independent steps overlap their waits on AWS), and
goes on with the steps they made ready, in the same task, so a grant costs
one trip through the broker rather than one per step. A failed step stops
the phase: the steps already running finish and are recorded, no new one
starts. ``run_step`` runs one step and hands the rest to a new task.

Running a step twice is harmless: the engine's steps are idempotent, a step
that succeeded is never picked again, and a task that finds the ready steps
claimed by live workers (their leases not run out) or nothing left to do
returns without doing anything. A worker killed at any point leaves its
claimed steps running with leases that lapse; the next task takes them over.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection, connections, transaction
from django.db.models import BooleanField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from provisioning.documents import build_plan, plan_hash
from provisioning.errors import InvalidInput, ProvisioningError, RetryableAwsError
from provisioning.steps import table
from provisioning.steps.policy_write import Companion
from requests_app import notifications
from requests_app.audit import record_event
from requests_app.aws import grant_clients_for
from requests_app.grants import grant_spec_for
from requests_app.logging_context import log_context
from requests_app.metrics import observe_step
from requests_app.models import AccessRequest, ProvisioningStep, RequestState
from requests_app.selectors import plan_approvals
from requests_app.services import rules
from requests_app.services.drift import after_grant_finished
from requests_app.services.transitions import move
from requests_app.workflow import scheduling
from requests_app.workflow.leases import LeaseLost, StepLease, lease_expiry
from requests_app.workflow.locks import arn_lock

logger = logging.getLogger(__name__)

Phase = ProvisioningStep.Phase
Status = ProvisioningStep.Status

RUNNABLE_STATES = scheduling.IN_PHASE
# Fields the engine's outputs set on the request.
OUTPUT_FIELDS = ("role_arn", "role_id", "endpoint_arn")


def engine_step(phase: str, name: str) -> Callable[..., Any]:
    """The engine function that carries out step ``name`` of ``phase``."""
    definition = table.step(name)
    if definition.phase != phase:
        raise KeyError(f"{name} is not a {phase} step")
    return definition.function


def run_step(request_id: int, phase: str, *, final_attempt: bool = False) -> str | None:
    """Run one ready step of ``phase`` for request ``request_id``; once it is
    recorded, a new task is asked for the steps after it.

    Returns the name of the step that ran, or None when there was nothing to
    do. A ``RetryableAwsError`` is re-raised for the caller to retry later,
    unless ``final_attempt``: then the step fails with the error's diagnosis.
    """
    claim, _ = _claim_ready_step(request_id, phase)
    if claim is None:
        return None
    name, more = _run_claimed(claim, final_attempt=final_attempt)
    if more:
        transaction.on_commit(lambda: scheduling.enqueue_next_step(request_id, phase))
    return name


def run_steps(request_id: int, phase: str, *, retried: bool = False, final_attempt: bool = False) -> list[str]:
    """Run the steps of ``phase``, the ready ones side by side, until the
    phase ends, a step fails, or other workers hold the ready steps; returns
    the names of the steps that ran.

    A ``RetryableAwsError`` is re-raised (or, on the ``final_attempt``, fails
    its step) as in ``run_step``, once the steps running beside it are
    recorded. A task that is itself a retry (``retried``) runs only the steps
    ready now (the one it retried among them) and hands the rest to a new
    task, so that every step starts with the whole retry budget.
    """
    ran: list[str] = []
    while True:
        names, more = _run_ready_steps(request_id, phase, final_attempt=final_attempt)
        ran += names
        if not names or not more:
            return ran
        if retried:
            transaction.on_commit(lambda: scheduling.enqueue_next_step(request_id, phase))
            return ran


Claim = tuple[AccessRequest, ProvisioningStep]


def _run_ready_steps(request_id: int, phase: str, *, final_attempt: bool) -> tuple[list[str], bool]:
    """Claim every ready step nobody holds and run them; (the names that ran,
    whether a step of the phase still awaits)."""
    claims: list[Claim] = []
    while True:
        claim, more_ready = _claim_ready_step(request_id, phase)
        if claim is not None:
            claims.append(claim)
        # Inside a caller's transaction (a test, a management command), other
        # threads' connections could not see its rows: one step at a time.
        if claim is None or not more_ready or connection.in_atomic_block:
            break
    if not claims:
        return [], False
    if len(claims) == 1:
        outcomes: list[Any] = [_run_claimed(claims[0], final_attempt=final_attempt)]
    else:
        outcomes = _side_by_side(claims, final_attempt=final_attempt)
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if errors:
        # A retryable AWS error (or a database error) of one step, raised once
        # the steps beside it are recorded.
        raise errors[0]
    return [name for name, _ in outcomes], any(more for _, more in outcomes)


def _side_by_side(claims: list[Claim], *, final_attempt: bool) -> list[Any]:
    """Run each claimed step in a thread of its own; each outcome is (name,
    more) or the exception its run raised.

    The threads share the process's client factory, so the request's
    provisioner roles are assumed once per account and its boto3 clients
    (thread-safe, unlike sessions) serve every thread. Each thread has its
    own database connection, closed when the thread ends.
    """
    outcomes: list[Any] = [None] * len(claims)

    def work(index: int, claim: Claim) -> None:
        try:
            outcomes[index] = _run_claimed(claim, final_attempt=final_attempt)
        except BaseException as error:  # handed to the task's thread
            outcomes[index] = error
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=work, args=(index, claim), name=f"step-{claim[1].name}-{claim[0].pk}")
        for index, claim in enumerate(claims)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _run_claimed(claim: Claim, *, final_attempt: bool) -> tuple[str, bool]:
    """Run one claimed step and record it; (its name, whether a step of the phase still awaits)."""
    request, step = claim
    request_id, phase = request.pk, step.phase
    more = False
    with log_context(request_id=request_id, step=step.name, phase=phase):
        started = time.monotonic()
        try:
            with StepLease(step) as lease:
                result = _call_engine(request, step, before_write=lease.check_before_write)
        except LeaseLost as error:
            # Another worker has the step (or will, once the lease runs out):
            # nothing more from this attempt, not even its failure.
            observe_step(step.name, time.monotonic() - started, False, diagnosis="lease_lost")
            logger.warning("%s", error.message)
            return step.name, False
        except RetryableAwsError as error:
            observe_step(step.name, time.monotonic() - started, False, diagnosis=error.diagnosis or "aws_unavailable")
            if final_attempt:
                _record_failure(request_id, step, error, default_diagnosis="aws_unavailable")
            else:
                _release_for_retry(step, error)
                raise
        except ProvisioningError as error:
            observe_step(step.name, time.monotonic() - started, False, diagnosis=error.diagnosis or "")
            _record_failure(request_id, step, error)
        except Exception as error:
            # A defect, not an AWS answer: fail visibly rather than leave the step
            # running for the sweeper to repeat forever.
            observe_step(step.name, time.monotonic() - started, False, diagnosis="crashed")
            logger.exception("step %s of request %s crashed", step.name, request_id)
            _record_failure(request_id, step, ProvisioningError(f"{type(error).__name__}: {error}"))
        else:
            observe_step(step.name, time.monotonic() - started, True)
            more = _record_success(request, step, result)
            logger.info("step %s done in %.0f ms (attempt %s)", step.name, (time.monotonic() - started) * 1000, step.attempts)
        if request.request_set_id is not None and any(step.name in table.upstream(name) for name in table.merged(phase)):
            # Its outcome may be the last the set's merging steps waited for.
            set_id = request.request_set_id
            transaction.on_commit(lambda: scheduling.wake_set_writes(set_id, phase))
    return step.name, more


def _claim_ready_step(request_id: int, phase: str) -> tuple[Claim | None, bool]:
    """Claim the first ready step of ``phase`` that no live worker holds, in
    a transaction of its own; (the claim or None, whether another ready step
    is left to claim).

    Two statements: the phase's steps with their request (the request row
    locked), and the claim.

    The request row is locked by that same statement: one that waited for
    the lock gets the request as it is now but the steps as they were when it
    started. The view of the steps may lag, never run ahead: a step seen
    pending that another worker claimed meanwhile is not claimed again (the
    claim's UPDATE names the status and attempt it saw), and the phase is
    closed only on a fresh read.
    """
    now = timezone.now()
    with transaction.atomic():
        steps = list(
            ProvisioningStep.objects.select_for_update(of=("request",))
            .select_related("request__datalake_account", "request__remote_account")
            .filter(request_id=request_id, phase=phase)
            .annotate(lease_live=ExpressionWrapper(Q(lease_expires_at__gt=Now()), output_field=BooleanField()))
            .order_by("position")
        )
        if not steps:
            return None, False
        request = steps[0].request
        if request.state not in RUNNABLE_STATES[phase]:
            return None, False
        if any(step.status == Status.FAILED for step in steps):
            return None, False
        succeeded = {step.name for step in steps if step.status == Status.SUCCEEDED}
        if len(succeeded) == len(steps):
            fresh = request.steps.filter(phase=phase).values_list("status", flat=True)
            if all(status == Status.SUCCEEDED for status in fresh):
                # Every step is done but the request never moved on: close it now.
                _finish_phase(request, phase)
            return None, False
        by_name = {step.name: step for step in steps}
        free = [
            by_name[name]
            for name in table.ready(phase, succeeded)
            if name in by_name and not (by_name[name].status == Status.RUNNING and by_name[name].lease_live)
        ]
        if request.request_set_id is not None:
            # A merging step waits for the other grants of its set (scheduling.wake_set_writes).
            free = [
                step for step in free
                if not (table.step(step.name).merges and scheduling.set_write_waits(request.request_set_id, step.name))
            ]  # fmt: skip
        if not free:
            return None, False  # live workers hold the ready steps, or they wait for them
        step = free[0]
        claimed = ProvisioningStep.objects.filter(pk=step.pk, status=step.status, attempts=step.attempts).update(
            status=Status.RUNNING,
            attempts=F("attempts") + 1,
            started_at=now,
            finished_at=None,
            lease_expires_at=lease_expiry(),
        )
        if not claimed:  # another worker claimed it while this one waited for the request row
            return None, False
        if step.status == Status.RUNNING:
            # Recorded only by the worker whose claim took the step: one that
            # saw the same lapsed lease a moment too late records nothing.
            _take_over(request, step)
        step.status, step.attempts, step.started_at, step.finished_at = Status.RUNNING, step.attempts + 1, now, None
        step.lease_expires_at = None  # on the database's clock, renewed by the lease
        if request.state == RequestState.APPROVED:
            _start_provisioning(request)
    return (request, step), len(free) > 1


def _take_over(request: AccessRequest, step: ProvisioningStep) -> None:
    """Record that ``step``'s running attempt lost its lease and is replaced by a new one."""
    logger.warning(
        "step %s of request %s: attempt %s lost its lease; running it again", step.name, request.pk, step.attempts
    )
    _audit_step(
        request,
        step,
        "step.lease_lapsed",
        target_arn="",
        details={
            "lapsed_attempt": step.attempts,
            "attempt": step.attempts + 1,
            "lapsed_attempt_started_at": step.started_at.isoformat() if step.started_at else None,
            "lease_expired_at": step.lease_expires_at.isoformat() if step.lease_expires_at else None,
        },
    )


def _start_provisioning(request: AccessRequest) -> None:
    move(request, RequestState.PROVISIONING, verb="provisioned", action="request.provisioning")


class PlanNotApproved(ProvisioningError):
    """The documents a write step would write are not the approved plan's."""

    def __init__(self, message: str):
        super().__init__(message, diagnosis="plan_not_approved")


def approval_of(request: AccessRequest, plan: dict) -> str | None:
    """Why ``plan`` may not be applied for ``request``, or None when it is its approved plan.

    Approved means: ``plan`` hashes to the request's ``plan_hash``, and the
    Remote account's required number of its approvers approved that hash.
    """
    if not request.plan_hash or plan_hash(plan) != request.plan_hash:
        return "the plan computed now differs from the approved plan"
    required = request.remote_account.required_approvals
    approvals = plan_approvals(request)
    if approvals < required:
        return f"the plan has {approvals} of the {required} approvals it needs"
    return None


def _call_engine(
    request: AccessRequest, step: ProvisioningStep, *, before_write: Callable[[str, str], None] | None = None
) -> Any:
    spec = grant_spec_for(request)
    clients = grant_clients_for(spec, before_write=before_write)
    function = engine_step(step.phase, step.name)
    definition = table.step(step.name)
    if step.name == table.PREFLIGHT:
        # The worker resolves the secret's key as it is now (not as approved):
        # the plan built from it is then compared with the approved one. At
        # apply time preflight reads only what no writing step reads again;
        # the role name, the endpoint identifier and the policy sizes are
        # checked by the steps that write them (provisioning.preflight).
        spec = dataclasses.replace(spec, kms_key_arn=None)
        return function(
            spec, clients=clients, shape_check=request.remote_account.allow_secret_shape_check, at_apply=True
        )
    if definition.phase == table.GRANT and definition.writes:
        # What the step writes is built from the request row: write only if
        # that is exactly the plan the approvers approved.
        try:
            refusal = approval_of(request, build_plan(spec))
        except InvalidInput as error:
            refusal = error.message
        if refusal:
            raise PlanNotApproved(f"Refusing to write: {refusal}.")
    merged = {}
    if definition.merges and request.request_set_id is not None:
        merged = {"companions": lambda: _companions(request, definition)}
    if definition.undoes is not None:
        written = [
            target
            for grant_step in request.steps.filter(phase=Phase.GRANT, name=definition.undoes)
            for target in grant_step.targets
        ]
        return function(spec, clients=clients, lock=arn_lock, written=written, **merged)
    if definition.locks:  # every merging step locks (table._check)
        return function(spec, clients=clients, lock=arn_lock, **merged)
    return function(spec, clients=clients)


def _companions(request: AccessRequest, definition: table.Step) -> list[Companion]:
    """The other grants of ``request``'s request set whose statement goes into
    (or, for a revoke, out of) the same write: on the same target, in the
    step's phase, the step not yet succeeded (a grant whose own run of the
    step waits for the lock finds the work done, and writes nothing), every
    step before it done, and for a grant the plan approved.

    Asked by the engine under the target's lock, so a grant revoked (or sent
    back to the approvers) before the write is not written for, and one
    revoked after it has its statement removed by its revoke, which waits for
    the same lock.
    """
    phase = definition.phase
    if definition.target == table.SECRET:
        same = Q(secret_arn=request.secret_arn)
    elif request.resolved_kms_key_arn:
        same = Q(resolved_kms_key_arn=request.resolved_kms_key_arn)
    else:
        return []
    siblings = (
        AccessRequest.objects.filter(same, request_set_id=request.request_set_id, state__in=RUNNABLE_STATES[phase])
        .exclude(pk=request.pk)
        .select_related("datalake_account", "remote_account")
        .prefetch_related("steps")
        .order_by("pk")
    )
    chosen = []
    for sibling in siblings:
        steps = {(step.phase, step.name): step for step in sibling.steps.all()}
        status = {name: step.status for (in_phase, name), step in steps.items() if in_phase == phase}
        if status.get(definition.name) not in (Status.PENDING, Status.RUNNING):
            continue
        if any(status.get(name) != Status.SUCCEEDED for name in table.upstream(definition.name)):
            continue
        spec = grant_spec_for(sibling)
        if definition.undoes is not None:
            undone = steps.get((Phase.GRANT, definition.undoes))
            chosen.append(Companion(spec, tuple(undone.targets if undone is not None else ())))
            continue
        try:
            refusal = approval_of(sibling, build_plan(spec))
        except InvalidInput as error:
            refusal = error.message
        if refusal is None:
            chosen.append(Companion(spec))
    return chosen


def _lock_claimed(request_id: int, step: ProvisioningStep) -> tuple[AccessRequest, ProvisioningStep] | None:
    """Re-read and lock the request and the step, if this run still owns the step.

    A run that outlived its lease may have been overtaken by a newer attempt:
    then that attempt records the outcome, not this one.
    """
    request = (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("datalake_account", "remote_account")
        .get(pk=request_id)
    )
    current = ProvisioningStep.objects.select_for_update().get(pk=step.pk)
    if current.status != Status.RUNNING or current.attempts != step.attempts:
        logger.info("step %s of request %s was taken over; dropping attempt %s", step.name, request_id, step.attempts)
        return None
    return request, current


def _record_success(request: AccessRequest, step: ProvisioningStep, result: Any) -> bool:
    """Record a step's result; True when a step of its phase still awaits.

    Two queries besides the audit event's: lock the request row (writing
    the engine's outputs on it, when there are any) and mark the step
    succeeded if this attempt still holds it. The phase's last step also
    finishes the phase.
    """
    if step.name == table.PREFLIGHT:
        return _record_preflight(request.pk, step, result)
    definition = table.step(step.name)
    outputs = result.outputs or {}
    target = outputs.get("target")
    if target and target not in step.targets:
        # Kept over every run of the step: revoke removes from each target written.
        step.targets = [*step.targets, target]
    step.before, step.after, step.aws_request_ids = result.before, result.after, list(result.aws_request_ids)
    changed = {
        field: outputs[field] for field in OUTPUT_FIELDS if outputs.get(field) and getattr(request, field) != outputs[field]
    }
    now = timezone.now()
    with transaction.atomic():
        # The request row first, as every transition does: a step's record
        # never interleaves with a transition of its request.
        if changed:
            AccessRequest.objects.filter(pk=request.pk).update(**changed, updated_at=now)
        else:
            list(AccessRequest.objects.select_for_update().filter(pk=request.pk).values_list("pk"))
        held = ProvisioningStep.objects.filter(pk=step.pk, status=Status.RUNNING, attempts=step.attempts).update(
            status=Status.SUCCEEDED, finished_at=now, error="", diagnosis="",
            before=step.before, after=step.after, aws_request_ids=step.aws_request_ids, targets=step.targets,
        )  # fmt: skip
        if not held:
            # A run that outlived its lease was overtaken by a newer attempt:
            # that attempt records the outcome, not this one.
            logger.info("step %s of request %s was taken over; dropping attempt %s", step.name, request.pk, step.attempts)
            transaction.set_rollback(True)
            return False
        for field, value in changed.items():
            setattr(request, field, value)
        step.status, step.finished_at, step.error, step.diagnosis = Status.SUCCEEDED, now, "", ""
        _audit_result(request, step, definition, result)
        if outputs.get("companions"):
            # After the commit, each under its own request's lock (see _audit_companions).
            target_arn = _target_arn(request, definition, outputs)
            transaction.on_commit(
                lambda: _audit_companions(request, step, definition, outputs["companions"], target_arn), robust=True
            )
        return _phase_goes_on(request.pk, step)


def _record_preflight(request_id: int, step: ProvisioningStep, result: Any) -> bool:
    """Record preflight's report; it may fail the request or send it back for approval."""
    with transaction.atomic():
        locked = _lock_claimed(request_id, step)
        if locked is None:
            return False
        request, step = locked
        step.after = result.to_dict()
        step.aws_request_ids = list(result.aws_request_ids)
        if not result.ok:
            # The request shows what failed now; a passing apply-time report
            # leaves the fuller one the approvers saw in place.
            _store_failed_preflight(request, result)
            failed = [check for check in result.checks if not check.ok]
            error = "; ".join(check.message for check in failed) or "preflight failed"
            _fail(request, step, error=error, diagnosis=result.diagnosis or "", aws_request_ids=step.aws_request_ids)
            return False
        if step.phase == Phase.GRANT:
            try:
                plan = build_plan(grant_spec_for(request, kms_key_arn=result.kms_key_arn))
            except InvalidInput as error:
                _fail(request, step, error=error.message, diagnosis=error.diagnosis or "invalid_input",
                      aws_request_ids=step.aws_request_ids)  # fmt: skip
                return False
            refusal = approval_of(request, plan)
            if refusal:
                _needs_reapproval(request, step, plan=plan, kms_key_arn=result.kms_key_arn, reason=refusal)
                return False
            request.resolved_kms_key_arn = result.kms_key_arn
            request.save(update_fields=["resolved_kms_key_arn", "updated_at"])
        _audit_step(
            request,
            step,
            table.step(table.PREFLIGHT).action,
            target_arn=request.secret_arn,
            details={"kms_key_arn": request.resolved_kms_key_arn, "aws_request_ids": step.aws_request_ids},
        )
        step.status = Status.SUCCEEDED
        step.finished_at = timezone.now()
        step.error = ""
        step.diagnosis = ""
        step.save()
        return _phase_goes_on(request_id, step)


def _phase_goes_on(request_id: int, step: ProvisioningStep) -> bool:
    """After ``step`` succeeded, under the request row's lock: True when a
    step of its phase still awaits; after the phase's last step, the phase is
    finished.

    Nothing is read to know: every other step of a phase is upstream of its
    last one (``table.last``), so a step before it always leaves the last one
    to run (the next claim finds what is ready, or that a step failed), and
    the last one runs only once all the others have succeeded.
    """
    if step.name != table.last(step.phase):
        return True
    request = (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("datalake_account", "remote_account")
        .get(pk=request_id)
    )
    _finish_phase(request, step.phase)
    return False


def _store_failed_preflight(request: AccessRequest, report: Any) -> None:
    # The key preflight resolves now is not stored as the request's key here:
    # that key is the approved plan's until the approvers approve another.
    request.preflight = report.to_dict()
    request.preflight_status = AccessRequest.PreflightStatus.FAILED
    request.save(update_fields=["preflight", "preflight_status", "updated_at"])


def _needs_reapproval(request: AccessRequest, step: ProvisioningStep, *, plan: dict, kms_key_arn: str, reason: str) -> None:
    """Nothing written: store the plan computed now and hand it back to the approvers."""
    previous_plan, previous_hash = request.plan, request.plan_hash
    step.status = Status.SUCCEEDED
    step.finished_at = timezone.now()
    step.error = ""
    step.diagnosis = ""
    step.save()
    changed = sorted(key for key in set(plan) | set(previous_plan or {}) if plan.get(key) != (previous_plan or {}).get(key))
    move(
        request,
        RequestState.NEEDS_REAPPROVAL,
        verb="sent back for approval",
        action="request.needs_reapproval",
        details={
            "reason": reason,
            "previous_plan_hash": previous_hash,
            "approval_round": request.approval_round + 1,
            "changed": changed,
            "previous_kms_key_arn": request.resolved_kms_key_arn,
            "kms_key_arn": kms_key_arn,
            "aws_request_ids": step.aws_request_ids,
        },
        plan=plan,
        plan_hash=plan_hash(plan),
        approval_round=request.approval_round + 1,
        resolved_kms_key_arn=kms_key_arn,
        diagnosis="plan_changed",
    )
    transaction.on_commit(lambda: notifications.notify_plan_changed(request, previous_plan or {}, previous_hash))
    # A rule in force may approve the new plan as it approved the old one.
    rules.match_on_commit(request)


def _audit_result(request: AccessRequest, step: ProvisioningStep, definition: table.Step, result: Any) -> None:
    outputs = result.outputs or {}
    target_arn = _target_arn(request, definition, outputs)
    concurrent = {key: outputs[key] for key in ("merges", "missing_after_put") if key in outputs}
    # Where CloudTrail records each call (requests_app.cloudtrail).
    calls = {"aws_calls": list(result.aws_calls)} if result.aws_calls else {}
    changed_elsewhere = [t for t in outputs.get("targets", []) if t.get("changed") and t.get("arn") != target_arn]
    for other in changed_elsewhere:
        # A revoke that also cleaned a key the grant wrote before the plan moved on.
        _audit_step(request, step, definition.action, target_arn=other["arn"],
                    details={"before": other["before"], "after": other["after"],
                             "aws_request_ids": step.aws_request_ids, **calls})  # fmt: skip
    if not definition.writes:
        action = definition.action
        details = {"after": result.after, "aws_request_ids": step.aws_request_ids, **calls}
    elif result.changed and not (changed_elsewhere and result.before == result.after):
        action = definition.action
        details = {
            "before": result.before, "after": result.after, "aws_request_ids": step.aws_request_ids,
            **concurrent, **calls,
        }
    else:
        # Nothing written (a re-run, or AWS already as planned): one line saying
        # so, without repeating the documents.
        action = f"step.{step.name}.unchanged"
        details = {"aws_request_ids": step.aws_request_ids, **calls}
    _audit_step(request, step, action, target_arn=target_arn, details=details)


def _audit_companions(
    request: AccessRequest, step: ProvisioningStep, definition: table.Step, written: list, target_arn: str
) -> None:
    """Each grant whose statement ``step`` wrote (or removed) with its own has
    the write in its own trail: the Sid(s), and for a grant the statement.

    Each event is recorded in a transaction of its own holding its grant's
    row, once the step's record committed. Inserting an event about a grant
    takes a share lock on that grant's row; taken inside the step's record,
    which holds the audit trail's lock, it would wait for the grant's own
    record holding its row and waiting for the trail: a deadlock.
    """
    for item in written:
        with transaction.atomic():
            other = (
                AccessRequest.objects.select_for_update(of=("self",))
                .select_related("remote_account")
                .filter(pk=int(item["grant_id"]))
                .first()
            )
            if other is None:
                continue
            record_event(
                action=definition.action,
                request=other,
                account=other.remote_account,
                target_arn=target_arn,
                details={
                    "phase": step.phase, "step": step.name, "written_with_request": request.pk,
                    **{"statement" if key == "document" else key: value for key, value in item.items()
                       if key != "grant_id"},
                    "aws_request_ids": step.aws_request_ids,
                },
            )  # fmt: skip


def _target_arn(request: AccessRequest, definition: table.Step, outputs: dict) -> str:
    if definition.target == table.SECRET:
        return request.secret_arn
    if definition.target == table.KEY:
        return outputs.get("key_arn") or request.resolved_kms_key_arn or request.kms_key_arn
    if definition.target == table.ENDPOINT:
        return outputs.get("endpoint_arn") or request.endpoint_arn
    return outputs.get("role_arn") or request.role_arn or grant_spec_for(request).role_arn


def _audit_step(request: AccessRequest, step: ProvisioningStep, action: str, *, target_arn: str, details: dict) -> None:
    account = request.datalake_account if table.step(step.name).side == table.DATALAKE else request.remote_account
    record_event(
        action=action,
        request=request,
        account=account,
        target_arn=target_arn or "",
        details={"phase": step.phase, "step": step.name, "attempt": step.attempts, **details},
    )


def _finish_phase(request: AccessRequest, phase: str) -> None:
    if phase == Phase.GRANT and request.state in RUNNABLE_STATES[Phase.GRANT]:
        if request.state == RequestState.APPROVED:
            _start_provisioning(request)
        move(
            request,
            RequestState.ACTIVE,
            verb="activated",
            action="request.active",
            details={"role_arn": request.role_arn, "endpoint_arn": request.endpoint_arn},
            completed_at=timezone.now(),
            diagnosis="",
        )
        transaction.on_commit(lambda: notifications.notify_finished(request))
        after_grant_finished(request)
    elif phase == Phase.REVOKE and request.state in RUNNABLE_STATES[Phase.REVOKE]:
        move(request, RequestState.REVOKED, verb="revoked", action="request.revoked", diagnosis="")


def _release_for_retry(step: ProvisioningStep, error: RetryableAwsError) -> None:
    """Put the step back to pending, with the error that will be retried shown on it."""
    with transaction.atomic():
        updated = ProvisioningStep.objects.filter(
            pk=step.pk, status=Status.RUNNING, attempts=step.attempts
        ).update(
            status=Status.PENDING,
            finished_at=timezone.now(),
            error=f"{error.message} (retrying)",
            aws_request_ids=list(error.aws_request_ids),
        )
    if updated:
        logger.info("step %s of request %s will be retried: %s", step.name, step.request_id, error.message)


def _record_failure(
    request_id: int, step: ProvisioningStep, error: ProvisioningError, *, default_diagnosis: str = ""
) -> None:
    with transaction.atomic():
        locked = _lock_claimed(request_id, step)
        if locked is None:
            return
        request, step = locked
        _fail(
            request,
            step,
            error=error.message,
            diagnosis=error.diagnosis or default_diagnosis,
            aws_request_ids=list(error.aws_request_ids),
        )


def _fail(request: AccessRequest, step: ProvisioningStep, *, error: str, diagnosis: str, aws_request_ids: list) -> None:
    step.status = Status.FAILED
    step.finished_at = timezone.now()
    step.error = error
    step.diagnosis = diagnosis
    step.aws_request_ids = aws_request_ids
    step.save()
    if request.state not in RUNNABLE_STATES[step.phase]:
        # A step that ran beside it failed first: the request has failed already.
        return
    # A failed revoke also lands in failed: the grant may be half taken apart,
    # and a retry (or another revoke) re-runs the idempotent revoke steps.
    move(
        request,
        RequestState.FAILED,
        verb="failed",
        action="request.failed",
        details={
            "phase": step.phase,
            "step": step.name,
            "attempt": step.attempts,
            "error": error,
            "diagnosis": diagnosis,
            "aws_request_ids": aws_request_ids,
        },
        diagnosis=diagnosis,
    )
    transaction.on_commit(lambda: notifications.notify_finished(request))
