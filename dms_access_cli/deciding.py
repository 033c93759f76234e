"""Deciding and changing a request: approve (the plan hash shown), reject, cancel, revoke, retry, extend."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Optional

import typer

from dms_access_cli.app import Interval, Json, RequestId, Timeout, Wait, Yes, command, confirm, connect, finish, follow_one
from dms_access_cli.errors import ExitCode, UsageProblem
from dms_access_cli.output import consoles, plan_view


def _followed(portal, detail: dict, *, goal: str, wait: bool, timeout, interval: float, json_output: bool):
    """(the request, its exit code): as answered, or, with ``wait``, once it settled."""
    if not wait:
        return detail, ExitCode.DONE
    return follow_one(portal, detail, goal=goal, timeout=timeout, interval=interval, json_output=json_output)


@command
def approve(
    request_id: RequestId,
    comment: Annotated[str, typer.Option(help="Kept with your decision.")] = "",
    plan_hash: Annotated[
        Optional[str],
        typer.Option(help="Approve this plan hash (e.g. the one you reviewed on the page) instead of the one shown now."),
    ] = None,
    yes: Yes = False,
    wait: Wait = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Show the plan and its hash, ask to confirm (unless --yes), and approve exactly that plan.

    If the plan changed in between, nothing is decided: exit 3 with the current hash.
    """
    out, _ = consoles(json_output)
    with connect() as portal:
        body = portal.get(f"/requests/{request_id}/plan/")
        seen = plan_hash or body.get("plan_hash")
        if not (json_output and yes):
            out.print(plan_view(str(request_id), body))
        confirm(f"Approve request {request_id} with plan hash {seen}?", yes=yes, json_output=json_output)
        detail = portal.post(f"/requests/{request_id}/approve/", {"plan_hash": seen, "comment": comment})
        detail, code = _followed(portal, detail, goal="active", wait=wait, timeout=timeout, interval=interval,
                                 json_output=json_output)
    return finish(detail, code, json_output=json_output, goal="active")


@command
def reject(
    request_id: RequestId,
    reason: Annotated[str, typer.Option("--reason", help="Why (required); the requester reads it.")],
    json_output: Json = False,
) -> ExitCode:
    """Reject a request awaiting approval."""
    with connect() as portal:
        detail = portal.post(f"/requests/{request_id}/reject/", {"comment": reason})
    return finish(detail, ExitCode.DONE, json_output=json_output)


@command
def cancel(request_id: RequestId, json_output: Json = False) -> ExitCode:
    """Cancel your request while it awaits approval."""
    with connect() as portal:
        detail = portal.post(f"/requests/{request_id}/cancel/")
    return finish(detail, ExitCode.DONE, json_output=json_output)


@command
def revoke(
    request_id: RequestId,
    yes: Yes = False,
    wait: Wait = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Revoke a grant: undo exactly what was done in AWS. Asks to confirm unless --yes."""
    confirm(f"Revoke request {request_id}? DMS loses access to the secret.", yes=yes, json_output=json_output)
    with connect() as portal:
        detail = portal.post(f"/requests/{request_id}/revoke/")
        detail, code = _followed(portal, detail, goal="revoked", wait=wait, timeout=timeout, interval=interval,
                                 json_output=json_output)
    return finish(detail, code, json_output=json_output, goal="revoked")


@command
def retry(
    request_id: RequestId,
    wait: Wait = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Run a failed request's failed steps again (done steps stay done)."""
    with connect() as portal:
        detail = portal.post(f"/requests/{request_id}/retry/")
        detail, code = _followed(portal, detail, goal="active", wait=wait, timeout=timeout, interval=interval,
                                 json_output=json_output)
    return finish(detail, code, json_output=json_output, goal="active")


@command
def extend(
    request_id: RequestId,
    expires_at: Annotated[Optional[str], typer.Option(help="The new expiry (ISO 8601).")] = None,
    days: Annotated[Optional[int], typer.Option(min=1, help="Or: the new expiry this many days from now.")] = None,
    justification: Annotated[str, typer.Option(help="Why the grant is needed longer.")] = "",
    json_output: Json = False,
) -> ExitCode:
    """Ask for an active grant to expire later; its Remote approvers decide."""
    if (expires_at is None) == (days is None):
        raise UsageProblem("Give either --expires-at or --days.")
    if days is not None:
        expires_at = (datetime.now(timezone.utc) + timedelta(days=days)).isoformat(timespec="seconds")
    with connect() as portal:
        detail = portal.post(
            f"/requests/{request_id}/extend/", {"expires_at": expires_at, "justification": justification}
        )
    out, _ = consoles(json_output)
    code = finish(detail, ExitCode.DONE, json_output=json_output)
    if not json_output and detail.get("pending_extension"):
        out.print(f"Extension to {detail['pending_extension'].get('expires_at')} awaits the Remote approvers.", markup=False)
    return code
