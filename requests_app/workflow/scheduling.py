"""Scheduling the engine's steps for a request.

The services call ``schedule_*`` inside their transaction: the step rows are
created with the transition, and the worker is only told after the commit
(``transaction.on_commit``), so a rolled-back transition never runs in AWS.
The tasks are sent by name, so this module does not import the workers' code.
"""
from __future__ import annotations

import logging
from collections.abc import Collection

from django.db import transaction
from django.db.models import Q
from kombu.exceptions import OperationalError as KombuOperationalError

from provisioning.steps import table
from requests_app.models import AccessRequest, ProvisioningStep, RequestState

logger = logging.getLogger(__name__)

RUN_STEP_TASK = "provisioning.run_step"
# The states in which a phase's steps may run; in any other state (cancelled,
# failed, revoked...) a queued task is stale and does nothing.
IN_PHASE = {
    ProvisioningStep.Phase.GRANT: (RequestState.APPROVED, RequestState.PROVISIONING),
    ProvisioningStep.Phase.REVOKE: (RequestState.REVOKING,),
}

def enqueue_next_step(request_id: int, phase: str) -> bool:
    """Ask a worker to run the request's next pending step of ``phase``;
    False when the broker could not be reached.

    Runs after the transition committed, so a broker that cannot be reached
    must not turn a recorded decision into an error page: the failure is
    logged and the periodic sweep enqueues the work once the broker is back.
    """
    from portal.celery import app

    try:
        app.send_task(RUN_STEP_TASK, args=[request_id, phase])
    except (KombuOperationalError, OSError):
        logger.exception("could not enqueue %s work for request %s; the sweep will retry", phase, request_id)
        return False
    return True


def _enqueue_after_commit(request: AccessRequest, phase: str) -> None:
    request_id = request.pk
    transaction.on_commit(lambda: enqueue_next_step(request_id, phase))


def _reset_steps(request: AccessRequest, phase: str, only: Collection[str] | None = None) -> None:
    """Every step of ``phase`` (or only the steps named in ``only``) pending
    again, in one statement: new rows are inserted, rows of an earlier run are
    reset in place. Positions follow the step table, an order that respects
    its graph (preflight runs again in the worker right before the first
    write, because AWS may have changed since the approvers looked)."""
    pending = {"status": ProvisioningStep.Status.PENDING, "error": "", "diagnosis": ""}
    ProvisioningStep.objects.bulk_create(
        [
            ProvisioningStep(request=request, phase=phase, name=name, position=position, **pending)
            for position, name in enumerate(table.names(phase))
            if only is None or name in only
        ],
        update_conflicts=True,
        unique_fields=["request", "phase", "name"],
        update_fields=["position", *pending],
    )


def schedule_grant(request: AccessRequest) -> None:
    """Create the grant's pending steps and run them after this transaction commits."""
    _reset_steps(request, ProvisioningStep.Phase.GRANT)
    _enqueue_after_commit(request, ProvisioningStep.Phase.GRANT)


def schedule_grant_steps(request: AccessRequest, names: Collection[str]) -> None:
    """Put only the grant steps ``names`` back to pending and run them after
    this transaction commits; the grant's other steps stay done, so the runner
    passes over them (a repair re-runs only what puts back what drifted)."""
    unknown = set(names) - set(table.names(table.GRANT))
    if unknown:
        raise ValueError(f"not grant steps: {sorted(unknown)}")
    _reset_steps(request, ProvisioningStep.Phase.GRANT, only=set(names))
    _enqueue_after_commit(request, ProvisioningStep.Phase.GRANT)


def schedule_revoke(request: AccessRequest) -> None:
    """Create the revoke's pending steps and run them after this transaction commits."""
    _reset_steps(request, ProvisioningStep.Phase.REVOKE)
    _enqueue_after_commit(request, ProvisioningStep.Phase.REVOKE)


def schedule_retry(request: AccessRequest, phase: str = ProvisioningStep.Phase.GRANT) -> None:
    """Put the failed steps of ``phase`` back to pending (done steps stay done) and run them.

    A grant's preflight runs again first, whatever failed: it reads AWS as it
    is now and checks that the plan is still the approved one before the
    retried step writes anything.
    """
    retried = request.steps.filter(phase=phase, status=ProvisioningStep.Status.FAILED)
    if phase == ProvisioningStep.Phase.GRANT:
        retried = request.steps.filter(phase=phase).filter(
            Q(status=ProvisioningStep.Status.FAILED) | Q(name=table.PREFLIGHT)
        )
    retried.update(status=ProvisioningStep.Status.PENDING, error="", diagnosis="")
    _enqueue_after_commit(request, phase)


# --- the grants of one request set --------------------------------------------
# A merging step (``table.Step.merges``) of a grant of a set waits until every
# grant of the set in the same phase has finished the steps it waits for; the
# first of them to run then writes (or removes) the statements of all of them
# on its target in one put. Whoever finishes the last of those steps wakes the
# waiting grants.


def set_write_waits(set_id: int, name: str) -> bool:
    """Whether a grant of set ``set_id`` in the phase of merging step ``name``
    has yet to finish a step that ``name`` waits for."""
    phase = table.step(name).phase
    return (
        ProvisioningStep.objects.filter(
            request__request_set_id=set_id,
            request__state__in=IN_PHASE[phase],
            phase=phase,
            name__in=table.upstream(name),
        )
        .exclude(status=ProvisioningStep.Status.SUCCEEDED)
        .exists()
    )


def wake_set_writes(set_id: int, phase: str) -> None:
    """Once no grant of the set in ``phase`` has a step left before its
    merging steps, ask a worker for each grant whose merging steps wait."""
    merged = table.merged(phase)
    if any(set_write_waits(set_id, name) for name in merged):
        return
    waiting = (
        ProvisioningStep.objects.filter(
            request__request_set_id=set_id,
            request__state__in=IN_PHASE[phase],
            phase=phase,
            name__in=merged,
            status=ProvisioningStep.Status.PENDING,
        )
        .values_list("request_id", flat=True)
        .distinct()
    )
    for request_id in sorted(waiting):
        enqueue_next_step(request_id, phase)
