"""Celery tasks: thin wrappers that take ids and call the workflow.

The names are explicit so that renaming a function never strands queued work.
The logic lives in ``runner`` and ``sweeper``, where it is tested without a
broker.
"""
from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings

from provisioning.errors import RetryableAwsError
from requests_app import runner, sweeper
from requests_app.aws import set_client_factory


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
def run_step(self, request_id: int, phase: str) -> str | None:
    """Run the next step of ``phase`` for one request; retried on retryable AWS errors."""
    return runner.run_step(request_id, phase, final_attempt=self.request.retries >= self.max_retries)


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
