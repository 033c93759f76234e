"""Celery tasks: thin wrappers that take ids and call the workflow.

The names are explicit so that renaming a function never strands queued work.
The logic lives in ``runner``, ``sweeper`` and the services, where it is
tested without a broker.
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from django.conf import settings

from provisioning.errors import PermanentAwsError, RetryableAwsError
from requests_app.aws import set_client_factory
from requests_app.services import audit_chain, drift, expiry, rules, waiting
from requests_app.workflow import runner, sweeper

logger = logging.getLogger(__name__)


@shared_task(
    name="provisioning.run_step",
    bind=True,
    acks_late=True,
    # A worker killed mid-step hands the message back instead of dropping it.
    reject_on_worker_lost=True,
    autoretry_for=(RetryableAwsError,),
    retry_backoff=settings.PROVISIONING_RETRY_BACKOFF,
    retry_backoff_max=settings.PROVISIONING_RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=settings.PROVISIONING_RETRY_MAX_RETRIES,
)
def run_step(self, request_id: int, phase: str) -> list[str]:
    """Run the next steps of ``phase`` for one request; retried on retryable AWS errors."""
    retries = self.request.retries
    return runner.run_steps(request_id, phase, retried=retries > 0, final_attempt=retries >= self.max_retries)


@shared_task(name="provisioning.sweep", acks_late=True)
def sweep() -> dict[str, int]:
    """Revoke expired grants and re-enqueue lost work (run by beat every minute)."""
    expired = sweeper.expire_due_grants()
    lost = sweeper.sweep_lost_work()
    return {"expired": len(expired), "requeued": len(lost)}


@worker_process_init.connect
def _fresh_clients_in_each_child(**_kwargs) -> None:
    # boto3 sessions and their connection pools must not cross a fork.
    set_client_factory(None)


_worker_sweep: sweeper.WorkerSweep | None = None


@worker_ready.connect
def _sweep_lost_work_in_the_worker(**_kwargs) -> None:
    # In the worker's main process (the pool's children are forked before
    # this): lapsed leases are found even while beat is down.
    global _worker_sweep
    if settings.PROVISIONING_WORKER_SWEEP:
        _worker_sweep = sweeper.WorkerSweep().start()


@worker_shutdown.connect
def _stop_worker_sweep(**_kwargs) -> None:
    if _worker_sweep is not None:
        _worker_sweep.stop()


@shared_task(name="provisioning.remind_expiring", acks_late=True)
def remind_expiring() -> int:
    """Remind requesters of grants expiring soon, once per expiry (run by beat)."""
    return len(expiry.remind_expiring_grants())


@shared_task(name="provisioning.check_drift", acks_late=True)
def check_drift() -> int:
    """Queue a drift check of every active grant (run by beat); one task per grant,
    so the checks spread over the workers and one slow account holds up no other."""
    request_ids = drift.active_grant_ids()
    for request_id in request_ids:
        check_grant_drift.delay(request_id)
    return len(request_ids)


@shared_task(
    name="provisioning.check_grant_drift",
    acks_late=True,
    autoretry_for=(RetryableAwsError,),
    retry_backoff=settings.PROVISIONING_RETRY_BACKOFF,
    retry_backoff_max=settings.PROVISIONING_RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=3,
)
def check_grant_drift(request_id: int) -> list[str] | None:
    """Compare one active grant with AWS and record the report; returns the drift kinds."""
    try:
        request = drift.grant_check_drift(request_id=request_id)
    except PermanentAwsError as error:
        # The provisioner role cannot read something: the previous report
        # stays, and the log names what could not be read.
        logger.warning("drift check of request %s could not read AWS (%s): %s", request_id, error.diagnosis, error.message)
        return None
    return None if request is None else list((request.drift or {}).get("kinds", []))


@shared_task(name="audit.verify_and_checkpoint", acks_late=True)
def verify_and_checkpoint() -> bool:
    """Verify the audit events added since the last run and write a checkpoint (run by beat)."""
    report, _ = audit_chain.audit_chain_verify()
    return report.ok


@shared_task(name="requests.tend_pending", acks_late=True)
def tend_pending() -> dict[str, int]:
    """Let approval rules decide the requests waiting for them, then remind,
    escalate and expire requests pending approval, by each account's settings (run by beat)."""
    approved_by_rules = rules.waiting_requests_match()
    outcomes = waiting.pending_approvals_tend()
    return {"approved_by_rules": len(approved_by_rules), **{outcome: len(ids) for outcome, ids in outcomes.items()}}
