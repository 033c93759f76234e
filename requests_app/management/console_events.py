"""The quickstart's console: one short line per notable event of a request.

The processes' JSON logs go to files (var/log/); a person watching the
terminal wants to know that a request was filed, decided, moved a step, and
ended up active or failed, and where to look at it. The audit trail already
records each of those in order, in the database every process shares, so the
console reads it rather than the logs.
"""
from __future__ import annotations

from django.db import DatabaseError

from requests_app.models import AuditEvent

# Actions of the request's life a person follows; the rest (AWS writes, audit
# checkpoints, accounts, tokens...) are on the audit page and in the logs.
_SAID = {
    "request.submitted": "filed by {actor} ({engine} {endpoint}, preflight {preflight})",
    # One line per approver; the grant's steps follow once enough approved.
    "decision.approve": "approved by {actor}",
    "decision.reject": "rejected by {actor}",
    # An approval rule's: {actor} is "rule <name> v<version>".
    "decision.rule_approve": "approved by {actor}",
    "request.cancelled": "cancelled by {actor}",
    "request.needs_reapproval": "needs approval again: the plan changed",
    "request.active": "active",
    "request.failed": "FAILED ({diagnosis})",
    "request.revoke_requested": "revoke requested by {actor}",
    "request.expired": "expired; revoking",
    "request.revoked": "revoked",
}


def describe(event: AuditEvent, *, base_url: str) -> str | None:
    """The console line for ``event``, or None when it is not one a person follows."""
    if event.request_id is None:
        return None
    request = event.request
    step = event.details.get("step") if isinstance(event.details, dict) else None
    written_with = event.details.get("written_with_request") if isinstance(event.details, dict) else None
    if step and written_with:
        what = f"statement written by request #{written_with}'s {step}"  # one put for the set's grants
    elif step and event.action.startswith(("step.", "aws.")):
        what = f"step {step} done"
    elif event.action in _SAID:
        what = _SAID[event.action].format(
            actor=event.actor_label or "the portal",
            engine=request.engine,
            endpoint=request.endpoint_identifier,
            preflight=request.preflight_status.replace("_", " "),
            diagnosis=request.diagnosis or event.details.get("diagnosis") or "see the request's page",
        )
    else:
        return None
    when = event.created_at.strftime("%H:%M:%S")
    return f"{when}  request #{event.request_id} {what}   {base_url}/requests/{event.request_id}/"


class EventFeed:
    """Audit events written after it was made, turned into console lines."""

    def __init__(self, *, base_url: str) -> None:
        self.base_url = base_url
        last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
        self.last_id = last or 0
        self._last_said: tuple | None = None

    def new_lines(self) -> list[str]:
        try:
            events = list(
                AuditEvent.objects.filter(id__gt=self.last_id).select_related("request").order_by("id")[:200]
            )
        except DatabaseError:
            # SQLite busy under a writer: the same events are read next time.
            return []
        lines = []
        for event in events:
            self.last_id = event.id
            line = describe(event, base_url=self.base_url)
            # A step that changed two things (a revoke cleaning an older key
            # too) is recorded twice; it is done once.
            said = (event.request_id, line and line.split("  ", 1)[1])
            if line and said != self._last_said:
                lines.append(line)
                self._last_said = said
        return lines
