"""Nothing waits forever: reminders, escalation and expiry of requests pending approval.

Each Remote account sets (``AwsAccount``) how long its requests may wait:

- every ``approval_reminder_hours`` (default 24) a request still pending
  reminds the account's approvers again (counted on the request);
- after ``escalate_after_hours`` (optional) it is escalated once: the
  account's escalation groups and people are told. They gain no right to
  approve or to see the request; they chase the approvers;
- after ``expire_pending_after_days`` (default 14) it expires (state
  ``expired``, final) and the requester is told.

Run by beat (``requests.tend_pending``); each request is handled under its row
lock, so a sweep that runs twice, or two at once, sends nothing twice. All
three are audited. The grants of a request set are tended each on its own
and told once, for the set.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from requests_app import membership, notifications
from requests_app.audit import record_event
from requests_app.models import AccessRequest, RequestState
from requests_app.services.transitions import lock_request, move


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


def escalation_names(account) -> list[str]:
    """Who an account escalates to, as the request page shows it."""
    groups = [f"group {group.name}" for group in account.escalation_groups.order_by("name")]
    people = [user.get_username() for user in account.escalation_users.order_by("username")]
    return groups + people


def _tells(request: AccessRequest) -> bool:
    """Whether what happens to ``request`` now is told (it is audited either
    way): a grant of a request set is told once for its set, by the last of
    its grants still waiting (the sweep goes through them oldest first)."""
    if request.request_set_id is None:
        return True
    return not AccessRequest.objects.filter(
        request_set_id=request.request_set_id, state=RequestState.PENDING_APPROVAL, pk__gt=request.pk
    ).exists()


def _tend(request_id: int, now: datetime) -> list[str]:
    done: list[str] = []
    with transaction.atomic():
        request = lock_request(request_id)
        if request.state != RequestState.PENDING_APPROVAL:
            return done
        account = request.remote_account
        waited = now - request.created_at
        if waited >= timedelta(days=account.expire_pending_after_days):
            move(
                request,
                RequestState.EXPIRED,
                verb="expired",
                action="request.expired_unanswered",
                details={
                    "waited_hours": _hours(waited),
                    "expire_pending_after_days": account.expire_pending_after_days,
                    "reminders": request.approval_reminders,
                    "escalated_to": request.escalated_to,
                },
                completed_at=now,
            )
            if _tells(request):
                transaction.on_commit(lambda: notifications.notify_pending_expired(request))
            return ["expired"]
        if (
            account.escalate_after_hours
            and request.escalated_at is None
            and waited >= timedelta(hours=account.escalate_after_hours)
        ):
            names = escalation_names(account)
            contacts = list(membership.escalation_contacts_of(account).filter(is_active=True))
            request.escalated_at, request.escalated_to = now, names
            request.save(update_fields=["escalated_at", "escalated_to", "updated_at"])
            record_event(
                action="request.escalated",
                request=request,
                target_arn=request.secret_arn,
                details={
                    "to": names,
                    "told": sorted(user.get_username() for user in contacts),
                    "waited_hours": _hours(waited),
                },
            )
            if _tells(request):
                transaction.on_commit(lambda: notifications.notify_escalated(request, contacts, now=now))
            done.append("escalated")
        last = request.approval_reminded_at or request.created_at
        if account.approval_reminder_hours and now - last >= timedelta(hours=account.approval_reminder_hours):
            request.approval_reminders += 1
            request.approval_reminded_at = now
            request.save(update_fields=["approval_reminders", "approval_reminded_at", "updated_at"])
            approvers = membership.approvers_of(account).exclude(pk=request.requester_id).filter(is_active=True)
            record_event(
                action="request.approval_reminder_sent",
                request=request,
                target_arn=request.secret_arn,
                details={
                    "reminder": request.approval_reminders,
                    "to": sorted(user.get_username() for user in approvers),
                    "waited_hours": _hours(waited),
                },
            )
            if _tells(request):
                transaction.on_commit(lambda: notifications.notify_approval_reminder(request, now=now))
            done.append("reminded")
    return done


def pending_approvals_tend(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Remind, escalate and expire the requests pending approval that are due
    (see the module's docstring); returns the request ids per outcome."""
    now = now or timezone.now()
    outcomes: dict[str, list[int]] = {"reminded": [], "escalated": [], "expired": []}
    pending = (
        AccessRequest.objects.filter(state=RequestState.PENDING_APPROVAL)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)
    )
    for request_id in pending:
        for outcome in _tend(request_id, now):
            outcomes[outcome].append(request_id)
    return outcomes
