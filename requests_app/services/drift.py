"""Drift of active grants: checking them against AWS and recording it.

The periodic check reads AWS with no transaction open (the reads can be
slow), then records the report on the request in a short transaction.
Repairing a drifted grant (and who may) is ``requests_app.services.repair``.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from provisioning.drift import check_drift
from requests_app import notifications
from requests_app.audit import record_event
from requests_app.aws import grant_clients_for
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, RequestState
from requests_app.services.repair import close_outdated_repair
from requests_app.services.transitions import lock_request

logger = logging.getLogger(__name__)

CHECK_GRANT_DRIFT_TASK = "provisioning.check_grant_drift"


def active_grant_ids() -> list[int]:
    """The ids of every active grant, oldest check first (never checked first of all)."""
    return list(
        AccessRequest.objects.filter(state=RequestState.ACTIVE)
        .order_by("drift_checked_at", "pk")
        .values_list("pk", flat=True)
    )


def _finding_keys(report: dict) -> set[tuple[str, str]]:
    return {(f.get("kind", ""), f.get("resource", "")) for f in (report or {}).get("findings", [])}


def grant_drift_record(*, request_id: int, report: dict, now: datetime | None = None) -> tuple[AccessRequest, list[str]]:
    """Store the drift ``report`` (``DriftReport.to_dict()``) on an active grant.

    Returns the request and the kinds of finding that are new since the last
    check; those are audited (``grant.drift_detected``) and notified. A grant
    whose drift went away gets ``grant.drift_cleared``. A request that left
    the active state meanwhile is left alone.
    """
    now = now or timezone.now()
    with transaction.atomic():
        request = lock_request(request_id)
        if request.state != RequestState.ACTIVE:
            return request, []
        previous = request.drift or {}
        new_keys = _finding_keys(report) - _finding_keys(previous)
        new_kinds = sorted({kind for kind, _ in new_keys})
        request.drift = report
        request.drift_checked_at = now
        request.save(update_fields=["drift", "drift_checked_at", "updated_at"])
        close_outdated_repair(request, report)
        if new_kinds:
            record_event(
                action="grant.drift_detected",
                request=request,
                target_arn=request.role_arn or request.secret_arn,
                details={
                    "kinds": new_kinds,
                    "findings": [f for f in report.get("findings", []) if (f.get("kind"), f.get("resource")) in new_keys],
                    "aws_request_ids": report.get("aws_request_ids", []),
                },
            )
            transaction.on_commit(lambda: notifications.notify_drift(request, new_kinds))
        elif previous.get("drifted") and not report.get("drifted"):
            record_event(
                action="grant.drift_cleared",
                request=request,
                target_arn=request.role_arn or request.secret_arn,
                details={"previous_kinds": previous.get("kinds", [])},
            )
    return request, new_kinds


def grant_check_drift(*, request_id: int) -> AccessRequest | None:
    """Check one active grant against AWS and record the result.

    Returns None when the request is not an active grant. An AWS error is
    raised to the caller (the task): a check that could not read is not a
    clean check, and the previous report stays.
    """
    request = (
        AccessRequest.objects.select_related("datalake_account", "remote_account").filter(pk=request_id).first()
    )
    if request is None or request.state != RequestState.ACTIVE:
        return None
    spec = grant_spec_for(request)
    report = check_drift(spec, clients=grant_clients_for(spec), expected_role_id=request.role_id or None)
    request, _ = grant_drift_record(request_id=request_id, report=report.to_dict())
    return request


def enqueue_drift_check(request_id: int) -> None:
    """Ask a worker to check one grant for drift (used after a repair finishes)."""
    from portal.celery import app

    try:
        app.send_task(CHECK_GRANT_DRIFT_TASK, args=[request_id])
    except Exception:
        # The periodic check comes round anyway; a broker hiccup must not
        # fail the transition that asked for this one.
        logger.exception("could not enqueue a drift check of request %s", request_id)


def after_grant_finished(request: AccessRequest) -> None:
    """Called by the runner when a grant's steps are all done, inside its transaction.

    A grant that had drifted was just repaired: check it again once this
    commits, so the request shows the repair's result without waiting for
    the next periodic check. A first grant has no report and is left to it.
    """
    if (request.drift or {}).get("drifted"):
        request_id = request.pk
        transaction.on_commit(lambda: enqueue_drift_check(request_id))
