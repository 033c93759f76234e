"""Cancel, revoke, retry and expire: the transitions after filing that are
not decisions."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from requests_app import permissions
from requests_app.errors import InvalidTransition, NotAllowed
from requests_app.models import AccessRequest, ProvisioningStep, RequestState
from requests_app.services.transitions import lock_request, lock_request_for, move
from requests_app.workflow import scheduling


def access_request_cancel(*, request_id, user, source_ip: str | None = None) -> AccessRequest:
    """The requester withdraws a request that is still awaiting approval."""
    with transaction.atomic():
        request = lock_request_for(user=user, request_id=request_id)
        if not permissions.can_cancel(user, request):
            raise NotAllowed("Only the requester may cancel a request.")
        move(
            request, RequestState.CANCELLED, verb="cancelled", action="request.cancelled",
            actor=user, source_ip=source_ip,
        )
    return request


def access_request_revoke(*, request_id, user, source_ip: str | None = None) -> AccessRequest:
    """Take an active (or failed, possibly half-made) grant out of AWS."""
    with transaction.atomic():
        request = lock_request_for(user=user, request_id=request_id)
        if not permissions.can_revoke(user, request):
            raise NotAllowed(
                "Only the requester, an approver of the Remote account or an administrator may revoke a request."
            )
        move(
            request, RequestState.REVOKING, verb="revoked", action="request.revoke_requested",
            actor=user, source_ip=source_ip,
        )
        scheduling.schedule_revoke(request)
    return request


def _failed_phases(request: AccessRequest) -> set[str]:
    return set(request.steps.filter(status=ProvisioningStep.Status.FAILED).values_list("phase", flat=True))


def access_request_retry(*, request_id, user, source_ip: str | None = None) -> AccessRequest:
    """Run the failed steps of a failed request again (the steps are idempotent).

    A failed grant goes back to provisioning; a failed revoke goes back to
    revoking. Steps that succeeded stay done.
    """
    with transaction.atomic():
        request = lock_request_for(user=user, request_id=request_id)
        if not permissions.can_retry(user, request):
            raise NotAllowed("Only the requester or an administrator may retry a request.")
        if request.state != RequestState.FAILED:
            raise InvalidTransition(
                f"Request #{request.pk} is {RequestState(request.state).label.lower()}: only a failed request can be retried."
            )
        failed = _failed_phases(request)
        # A revoke runs after the grant, so a failed revoke step is the newer failure.
        phase = ProvisioningStep.Phase.REVOKE if ProvisioningStep.Phase.REVOKE in failed else ProvisioningStep.Phase.GRANT
        target = RequestState.REVOKING if phase == ProvisioningStep.Phase.REVOKE else RequestState.PROVISIONING
        move(
            request, target, verb="retried", action="request.retried",
            actor=user, source_ip=source_ip, details={"phase": phase}, diagnosis="",
        )
        if phase in failed:
            scheduling.schedule_retry(request, phase)
        else:
            # No step is marked failed (the failure came before any ran):
            # run the whole grant again; every step is idempotent.
            scheduling.schedule_grant(request)
    return request


def access_request_expire(*, request_id, now: datetime | None = None) -> AccessRequest:
    """Revoke an active grant whose ``expires_at`` has passed (run by the
    periodic sweep, so the actor is the worker)."""
    now = now or timezone.now()
    with transaction.atomic():
        request = lock_request(request_id)
        if request.state != RequestState.ACTIVE or request.expires_at is None or request.expires_at > now:
            raise InvalidTransition(f"Request #{request.pk} is not an active grant past its expiry.")
        move(
            request, RequestState.REVOKING, verb="revoked", action="request.expired",
            details={"expires_at": request.expires_at.isoformat()},
        )
        scheduling.schedule_revoke(request)
    return request
