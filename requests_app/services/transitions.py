"""What every request transition shares: lock the row, check, move, audit.

A service locks the request row first (SELECT ... FOR UPDATE), then checks
who is asking and what the state allows on the row as it now is, so two
people acting at once are serialised and the second sees the first's result.
"""
from __future__ import annotations

from typing import Any

from requests_app import permissions
from requests_app.audit import record_event
from requests_app.errors import InvalidTransition, NotFoundForUser
from requests_app.models import AccessRequest, RequestState
from requests_app.slack import messages as slack_messages


def lock_request(request_id: Any, **annotations: Any) -> AccessRequest:
    """The request row, locked until the end of the transaction (404 if there is none)."""
    try:
        return (
            AccessRequest.objects.select_for_update(of=("self",))
            .select_related("requester", "datalake_account", "remote_account")
            .annotate(**annotations)
            .get(pk=request_id)
        )
    except (AccessRequest.DoesNotExist, ValueError, TypeError):
        raise NotFoundForUser() from None


def lock_request_for(*, user, request_id: Any) -> AccessRequest:
    """Like ``lock_request``, and 404 as well when ``user`` may not see the request.

    Whether ``user`` approves for the request's two accounts is read by the
    locking statement itself, so the permission checks that follow make no
    query of their own. (Account membership is not serialised by the request's
    lock either way; what is, the decisions, the services read after it.)
    """
    active = permissions.is_active_user(user)
    request = lock_request(request_id, **(permissions.approver_annotations(user) if active else {}))
    if active:
        permissions.remember_approver_annotations(user, request)
    if not permissions.can_view(user, request):
        raise NotFoundForUser()
    return request


def ensure_can_move(request: AccessRequest, state: str, *, verb: str) -> None:
    """Raise InvalidTransition unless ``request`` may move to ``state`` now."""
    if not request.can_move_to(state):
        raise InvalidTransition(
            f"Request #{request.pk} is {RequestState(request.state).label.lower()}: it cannot be {verb}."
        )


def move(
    request: AccessRequest,
    state: str,
    *,
    verb: str,
    action: str,
    actor=None,
    actor_label: str | None = None,
    source_ip: str | None = None,
    details: dict[str, Any] | None = None,
    **fields: Any,
) -> AccessRequest:
    """Move ``request`` to ``state`` (checked against the lifecycle), save it
    with ``fields``, and record ``action`` in the same transaction (by
    ``actor``, or by what ``actor_label`` names when no person acted)."""
    ensure_can_move(request, state, verb=verb)
    previous = request.state
    request.state = state
    for name, value in fields.items():
        setattr(request, name, value)
    request.save(update_fields=["state", "updated_at", *fields])
    record_event(
        action=action,
        actor=actor,
        actor_label=actor_label,
        source_ip=source_ip,
        request=request,
        target_arn=request.secret_arn,
        details={"from_state": previous, "to_state": state, "plan_hash": request.plan_hash, **(details or {})},
    )
    # The request's Slack message (if it has one) shows every move, whoever made it.
    slack_messages.refresh_on_commit(request)
    return request
