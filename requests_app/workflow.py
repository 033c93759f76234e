"""Scheduling the engine's steps for a request.

The services call ``schedule_*`` inside their transaction: the step rows are
created with the transition, and the worker is only told after the commit
(``transaction.on_commit``), so a rolled-back transition never runs in AWS.
The tasks are sent by name, so this module does not import the workers' code.
"""
from __future__ import annotations

from django.db import transaction

from requests_app.models import AccessRequest, ProvisioningStep

RUN_STEP_TASK = "provisioning.run_step"

# The runbook's order. Preflight runs again in the worker, right before the
# first write, because AWS may have changed since the approvers looked.
STEP_NAMES = {
    ProvisioningStep.Phase.GRANT: (
        "preflight",
        "create_role",
        "grant_secret_policy",
        "grant_key_policy",
        "create_endpoint",
        "verify",
    ),
    ProvisioningStep.Phase.REVOKE: ("delete_endpoint", "revoke_key_policy", "revoke_secret_policy", "delete_role"),
}


def enqueue_next_step(request_id: int, phase: str) -> None:
    """Ask a worker to run the request's next pending step of ``phase``."""
    from portal.celery import app

    app.send_task(RUN_STEP_TASK, args=[request_id, phase])


def _enqueue_after_commit(request: AccessRequest, phase: str) -> None:
    request_id = request.pk
    transaction.on_commit(lambda: enqueue_next_step(request_id, phase))


def _reset_steps(request: AccessRequest, phase: str) -> None:
    for position, name in enumerate(STEP_NAMES[phase]):
        ProvisioningStep.objects.update_or_create(
            request=request,
            phase=phase,
            name=name,
            defaults={"position": position, "status": ProvisioningStep.Status.PENDING, "error": "", "diagnosis": ""},
        )


def schedule_grant(request: AccessRequest) -> None:
    """Create the grant's pending steps and run them after this transaction commits."""
    _reset_steps(request, ProvisioningStep.Phase.GRANT)
    _enqueue_after_commit(request, ProvisioningStep.Phase.GRANT)


def schedule_revoke(request: AccessRequest) -> None:
    """Create the revoke's pending steps and run them after this transaction commits."""
    _reset_steps(request, ProvisioningStep.Phase.REVOKE)
    _enqueue_after_commit(request, ProvisioningStep.Phase.REVOKE)


def schedule_retry(request: AccessRequest, phase: str = ProvisioningStep.Phase.GRANT) -> None:
    """Put the failed steps of ``phase`` back to pending (done steps stay done) and run them."""
    request.steps.filter(phase=phase, status=ProvisioningStep.Status.FAILED).update(
        status=ProvisioningStep.Status.PENDING, error="", diagnosis=""
    )
    _enqueue_after_commit(request, phase)
