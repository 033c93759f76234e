"""How long a request waited for its approvers, in words for the pages."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from requests_app.models import AccessRequest, RequestState

_TIMES = {1: "once", 2: "twice"}


def waited_words(delta: timedelta) -> str:
    """``2 days 3 hours``, ``5 hours``, ``under an hour``."""
    hours = int(delta.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    return " ".join(parts) or "under an hour"


def waiting_summary(request: AccessRequest, now: datetime | None = None) -> str:
    """"Waiting 2 days 3 hours for approval; reminded twice; escalated to group
    leads, kim on 2026-12-01 10:00 UTC" for a pending request, the same in
    the past for one that expired unanswered; "" for any other."""
    if request.state == RequestState.PENDING_APPROVAL:
        head = f"Waiting {waited_words((now or timezone.now()) - request.created_at)} for approval"
    elif request.state == RequestState.EXPIRED:
        end = request.completed_at or request.updated_at
        head = f"Expired unanswered after {waited_words(end - request.created_at)}"
    else:
        return ""
    parts = [head]
    if request.approval_reminders:
        times = _TIMES.get(request.approval_reminders, f"{request.approval_reminders} times")
        parts.append(f"approvers reminded {times}")
    if request.escalated_at:
        names = ", ".join(request.escalated_to) or "nobody"
        parts.append(f"escalated to {names} on {request.escalated_at:%Y-%m-%d %H:%M} UTC")
    return "; ".join(parts)
