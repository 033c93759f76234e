"""The periodic sweep: queue lost work again, and revoke expired grants.

Work is lost when the broker was down as a transition committed, when a
worker was killed in the middle of a step (its lease stops being renewed and
runs out within PROVISIONING_STEP_LEASE_SECONDS; its message would come back
only after the broker's visibility timeout), or when a worker holding a
queued message or a delayed retry died. Beat and every worker run the sweep
every PROVISIONING_SWEEP_INTERVAL_SECONDS, a fraction of the lease. The
database says what is left to do, so re-enqueueing is always safe: a task
that finds its step claimed by a live worker does nothing.
"""
from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Prefetch
from django.utils import timezone

from requests_app.errors import InvalidTransition
from requests_app.models import AccessRequest, ProvisioningStep, RequestState
from requests_app.services import access_request_expire
from requests_app.workflow import scheduling
from requests_app.workflow.leases import lapsed_leases_q

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
    started or ended, no re-send) for longer than the stall time. Work the
    sweep re-sent is not counted lost again before a worker had a lease's
    time to pick it up: with a backlog in the queue, every sweep (beat's and
    each worker's) would otherwise add a message per waiting request.
    """
    now = now or timezone.now()
    resent_cutoff = now - timedelta(seconds=settings.PROVISIONING_STEP_LEASE_SECONDS)
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
            resent = request.lost_work_sent_at is not None and request.lost_work_sent_at > resent_cutoff
            if any(step.pk in lapsed for step in running) and not resent:
                lost.append((request.pk, phase))
            continue
        activity = [request.updated_at, request.lost_work_sent_at or request.updated_at]
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
    sent = []
    for request_id, phase in lost:
        logger.warning("request %s: %s work was lost; enqueueing it again", request_id, phase)
        if scheduling.enqueue_next_step(request_id, phase):
            sent.append(request_id)
    # Only what reached the broker waits before the next re-send. Bookkeeping
    # of the sweep, not a change of the request: no audit event, and
    # updated_at (auto_now) stays as it was.
    AccessRequest.objects.filter(pk__in=sent).update(lost_work_sent_at=timezone.now())
    return lost


class WorkerSweep:
    """The lost-work sweep, run by a worker's main process itself every
    ``PROVISIONING_SWEEP_INTERVAL_SECONDS`` beside beat's: a dead beat (or one
    not yet restarted after the host died) leaves no lapsed lease unnoticed
    while any worker lives. Re-sends are throttled per request, so beat and
    several workers sweeping add no more messages than one sweeper."""

    def __init__(self, interval: float | None = None):
        self.interval = float(interval or settings.PROVISIONING_SWEEP_INTERVAL_SECONDS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lost-work-sweep", daemon=True)

    def start(self) -> WorkerSweep:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval * 2)

    def _run(self) -> None:
        try:
            # Spread over the interval, so workers started together do not sweep together.
            while not self._stop.wait(self.interval * random.uniform(0.8, 1.2)):
                close_old_connections()
                try:
                    sweep_lost_work()
                except DatabaseError as error:
                    logger.warning("the worker's lost-work sweep could not read the database: %s", error)
                    connection.close()
                except Exception:  # the next round tries again; a worker must not die of it
                    logger.exception("the worker's lost-work sweep failed")
                    connection.close()
        finally:
            connection.close()
