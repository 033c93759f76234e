"""Expiry of active grants: the reminder before it, and extensions.

A grant with ``expires_at`` is revoked by the worker once that moment has
passed (``access_request_expire``, run by the periodic sweep in
``requests_app.workflow.sweeper``). Some time before (``settings.EXPIRY_REMINDER_BEFORE``)
the requester is reminded, once per expiry. To keep the grant longer the requester asks for an
extension; like the approval, it is a decision of the Remote account's
approvers (the same number of them), and the plan does not change: only
``expires_at`` moves.
"""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from requests_app import membership, notifications, permissions
from requests_app.audit import record_event
from requests_app.errors import InvalidTransition, NotAllowed, ValidationFailed
from requests_app.models import AccessRequest, ExpiryExtension, RequestState
from requests_app.services.decisions import ensure_plan_seen
from requests_app.services.transitions import lock_request, lock_request_for
from requests_app.validation import clean_comment

JUSTIFICATION_MAX = 4000


def _remind(request_id: int, *, now: datetime, before) -> bool:
    with transaction.atomic():
        request = lock_request(request_id)
        if (
            request.state != RequestState.ACTIVE
            or request.reminded_at is not None
            or request.expires_at is None
            or not now < request.expires_at <= now + before
        ):
            return False
        request.reminded_at = now
        request.save(update_fields=["reminded_at", "updated_at"])
        record_event(
            action="request.expiry_reminder_sent",
            request=request,
            target_arn=request.secret_arn,
            details={"expires_at": request.expires_at.isoformat(), "to": request.requester.get_username()},
        )
        transaction.on_commit(lambda: notifications.notify_expiry_reminder(request))
    return True


def remind_expiring_grants(*, now: datetime | None = None) -> list[int]:
    """Remind the requester of every active grant expiring within
    ``settings.EXPIRY_REMINDER_BEFORE``, once per expiry; returns their ids."""
    now = now or timezone.now()
    before = settings.EXPIRY_REMINDER_BEFORE
    candidates = AccessRequest.objects.filter(
        state=RequestState.ACTIVE, reminded_at__isnull=True, expires_at__gt=now, expires_at__lte=now + before
    ).values_list("pk", flat=True)
    return [request_id for request_id in candidates if _remind(request_id, now=now, before=before)]


def _pending_extension(request: AccessRequest) -> ExpiryExtension | None:
    return (
        ExpiryExtension.objects.select_for_update()
        .filter(request=request, state=ExpiryExtension.State.PENDING)
        .first()
    )


def _clean_expiry(value, request: AccessRequest, now: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationFailed({"expires_at": ["Must be a date and time."]})
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    if value <= now:
        raise ValidationFailed({"expires_at": ["Must be in the future."]})
    if value <= request.expires_at:
        raise ValidationFailed(
            {"expires_at": [f"Must be later than the grant's current expiry ({request.expires_at.isoformat()})."]}
        )
    return value


def access_request_extend(
    *, request_id, user, expires_at: datetime, justification: str = "", source_ip: str | None = None
) -> AccessRequest:
    """The requester asks for an active grant to expire later.

    Creates a pending extension for the approvers to decide; the grant keeps
    its current expiry until they approve. One pending extension at a time.
    """
    justification = (justification or "").strip()
    if len(justification) > JUSTIFICATION_MAX:
        raise ValidationFailed({"justification": [f"Must be at most {JUSTIFICATION_MAX} characters."]})
    with transaction.atomic():
        request = lock_request_for(user=user, request_id=request_id)
        if not permissions.can_extend(user, request):
            raise NotAllowed("Only the requester may ask for a later expiry.")
        if request.state != RequestState.ACTIVE:
            raise InvalidTransition(
                f"Request #{request.pk} is {RequestState(request.state).label.lower()}: only an active grant can be extended."
            )
        if request.expires_at is None:
            raise InvalidTransition(f"Grant #{request.pk} does not expire: there is nothing to extend.")
        if _pending_extension(request) is not None:
            raise InvalidTransition(f"Grant #{request.pk} already has an extension awaiting the approvers.")
        new_expiry = _clean_expiry(expires_at, request, timezone.now())
        extension = ExpiryExtension.objects.create(
            request=request,
            requested_by=user,
            previous_expires_at=request.expires_at,
            expires_at=new_expiry,
            justification=justification,
        )
        record_event(
            action="extension.requested",
            actor=user,
            source_ip=source_ip,
            request=request,
            target_arn=request.secret_arn,
            details={
                "extension": extension.pk,
                "previous_expires_at": extension.previous_expires_at.isoformat(),
                "expires_at": extension.expires_at.isoformat(),
                "justification": justification,
                "plan_hash": request.plan_hash,
            },
        )
        transaction.on_commit(lambda: notifications.notify_extension_requested(extension))
    return request


def _decidable_extension(*, request_id, user, verb: str) -> tuple[AccessRequest, ExpiryExtension]:
    request = lock_request_for(user=user, request_id=request_id)
    if request.requester_id == user.pk:
        raise NotAllowed(f"Nobody may {verb} the extension of their own grant.")
    if not permissions.can_decide_extension(user, request):
        raise NotAllowed(
            f"Only approvers of the Remote account {request.remote_account.account_id} may {verb} this extension."
        )
    extension = _pending_extension(request)
    if extension is None:
        raise InvalidTransition(f"Grant #{request.pk} has no extension awaiting a decision.")
    if request.state != RequestState.ACTIVE:
        raise InvalidTransition(
            f"Request #{request.pk} is {RequestState(request.state).label.lower()}: its extension can no longer be decided."
        )
    if extension.approved_by.filter(pk=user.pk).exists():
        raise InvalidTransition("You have already approved this extension.")
    return request, extension


def _current_approvals(request: AccessRequest, extension: ExpiryExtension) -> int:
    # As for approvals: only people who are approvers now count.
    return (
        extension.approved_by.filter(pk__in=membership.approvers_of(request.remote_account_id).values("pk"))
        .exclude(pk=request.requester_id)
        .count()
    )


def _audit_decision(request, extension, *, user, outcome: str, comment: str, source_ip, **details) -> None:
    record_event(
        action=f"decision.extension_{outcome}",
        actor=user,
        source_ip=source_ip,
        request=request,
        target_arn=request.secret_arn,
        details={
            "extension": extension.pk,
            "expires_at": extension.expires_at.isoformat(),
            "comment": comment,
            "plan_hash": request.plan_hash,
            **details,
        },
    )


def access_request_extension_approve(
    *, request_id, user, plan_hash: str, comment: str = "", source_ip: str | None = None
) -> AccessRequest:
    """Record ``user``'s approval of the grant's pending extension; move the
    expiry once the Remote account's required number of approvers agree.

    Like an approval, it names the plan the approver was shown (``plan_hash``):
    the grant keeps that plan for longer."""
    comment = clean_comment(comment)
    with transaction.atomic():
        request, extension = _decidable_extension(request_id=request_id, user=user, verb="approve")
        ensure_plan_seen(request, plan_hash)
        extension.approved_by.add(user)
        approvals = _current_approvals(request, extension)
        required = request.remote_account.required_approvals
        _audit_decision(request, extension, user=user, outcome="approve", comment=comment, source_ip=source_ip,
                        approvals=approvals, required_approvals=required)
        if approvals >= required:
            extension.state = ExpiryExtension.State.APPROVED
            extension.decided_at = timezone.now()
            extension.save(update_fields=["state", "decided_at"])
            previous = request.expires_at
            request.expires_at = extension.expires_at
            request.reminded_at = None  # the new expiry gets its own reminder
            request.save(update_fields=["expires_at", "reminded_at", "updated_at"])
            record_event(
                action="request.expiry_extended",
                actor=user,
                source_ip=source_ip,
                request=request,
                target_arn=request.secret_arn,
                details={
                    "extension": extension.pk,
                    "previous_expires_at": previous.isoformat(),
                    "expires_at": request.expires_at.isoformat(),
                    "plan_hash": request.plan_hash,
                },
            )
            transaction.on_commit(lambda: notifications.notify_extension_decided(extension))
    return request


def access_request_extension_reject(*, request_id, user, comment: str, source_ip: str | None = None) -> AccessRequest:
    """Refuse the grant's pending extension, with a comment; the expiry stays."""
    comment = clean_comment(comment)
    with transaction.atomic():
        request, extension = _decidable_extension(request_id=request_id, user=user, verb="reject")
        if not comment:
            raise ValidationFailed({"comment": ["A comment is required to reject an extension."]})
        extension.state = ExpiryExtension.State.REJECTED
        extension.decided_at = timezone.now()
        extension.save(update_fields=["state", "decided_at"])
        _audit_decision(request, extension, user=user, outcome="reject", comment=comment, source_ip=source_ip)
        transaction.on_commit(lambda: notifications.notify_extension_decided(extension))
    return request
