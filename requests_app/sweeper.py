"""The periodic sweep: queue lost work again, and revoke expired grants.

Work is lost when the broker was down as a transition committed, when a
worker was killed in the middle of a step (its lease stops being renewed and
runs out within PROVISIONING_STEP_LEASE_SECONDS; its message would come back
only after the broker's visibility timeout), or when a worker holding a
queued message or a delayed retry died. Beat runs the sweep every
PROVISIONING_SWEEP_INTERVAL_SECONDS, a fraction of the lease. The database says what is left to do, so re-enqueueing is always safe:
a task that finds its step claimed by a live worker does nothing.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Prefetch
from django.utils import timezone

from requests_app import workflow
from requests_app.errors import InvalidTransition
from requests_app.leases import lapsed_leases_q
from requests_app.models import AccessRequest, ProvisioningStep, RequestState
from requests_app.services import access_request_expire

logger = logging.getLogger(__name__)

IN_FLIGHT = {
    RequestState.APPROVED: ProvisioningStep.Phase.GRANT,
    RequestState.PROVISIONING: ProvisioningStep.Phase.GRANT,
    RequestState.REVOKING: ProvisioningStep.Phase.REVOKE,
}


def requests_with_lost_work(*, now=None) -> list[tuple[int, str]]:
    """(request id, phase) of every in-flight request nobody is working on.

    That is a running step whose lease ran out (its worker stopped renewing
    it), or no step running and nothing happening (no transition, no attempt
    started or ended) for longer than the stall time.
    """
    now = now or timezone.now()
    lapsed = set(
        ProvisioningStep.objects.filter(status=ProvisioningStep.Status.RUNNING)
        .filter(lapsed_leases_q())
        .values_list("pk", flat=True)
    )
    stall_cutoff = now - timedelta(seconds=settings.PROVISIONING_STALL_SECONDS)
    in_flight = AccessRequest.objects.filter(state__in=list(IN_FLIGHT)).prefetch_related(
        Prefetch("steps", queryset=ProvisioningStep.objects.order_by("position"))
    )
    lost = []
    for request in in_flight:
        phase = IN_FLIGHT[request.state]
        steps = [step for step in request.steps.all() if step.phase == phase]
        running = [step for step in steps if step.status == ProvisioningStep.Status.RUNNING]
        if running:
            if any(step.pk in lapsed for step in running):
                lost.append((request.pk, phase))
            continue
        activity = [request.updated_at]
        activity += [moment for step in steps for moment in (step.started_at, step.finished_at) if moment]
        if max(activity) < stall_cutoff:
            lost.append((request.pk, phase))
    return lost


def expire_due_grants(*, now=None) -> list[int]:
    """Start the revoke of every active grant whose ``expires_at`` has passed; returns their ids."""
    now = now or timezone.now()
    due = AccessRequest.objects.filter(state=RequestState.ACTIVE, expires_at__lte=now).values_list("pk", flat=True)
    expired = []
    for request_id in due:
        try:
            access_request_expire(request_id=request_id, now=now)
        except InvalidTransition:
            continue  # revoked or re-dated in the meantime
        expired.append(request_id)
    return expired


def sweep_lost_work() -> list[tuple[int, str]]:
    """Enqueue the next step of every request whose work was lost; returns them."""
    lost = requests_with_lost_work()
    for request_id, phase in lost:
        logger.warning("request %s: %s work was lost; enqueueing it again", request_id, phase)
        workflow.enqueue_next_step(request_id, phase)
    return lost
