"""Reading: a request, the list, a plan, the audit trail, the change as a file."""
from __future__ import annotations

import enum
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from dms_access_cli.app import Json, RequestId, command, connect, finish
from dms_access_cli.errors import ExitCode, UsageProblem
from dms_access_cli.output import audit_table, consoles, emit_json, plan_view, requests_table


class ExportFormat(str, enum.Enum):
    cloudformation = "cloudformation"
    json = "json"
    cli = "cli"


class State(str, enum.Enum):
    """The request's states (the API's; a test holds the two lists together)."""

    pending_approval = "pending_approval"
    approved = "approved"
    provisioning = "provisioning"
    active = "active"
    failed = "failed"
    rejected = "rejected"
    cancelled = "cancelled"
    revoking = "revoking"
    revoked = "revoked"
    needs_reapproval = "needs_reapproval"
    expired = "expired"


@command
def status(request_id: RequestId, json_output: Json = False) -> ExitCode:
    """A request: its state, plan hash, steps and diagnosis."""
    with connect() as portal:
        detail = portal.get(f"/requests/{request_id}/")
    return finish(detail, ExitCode.DONE, json_output=json_output)


@command(name="list")
def list_requests(
    state: Annotated[Optional[State], typer.Option(help="Only requests in this state.")] = None,
    datalake_account: Annotated[Optional[str], typer.Option(help="Only this DataLake account (12 digits).")] = None,
    remote_account: Annotated[Optional[str], typer.Option(help="Only secrets in this Remote account (12 digits).")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only requests I filed.")] = False,
    awaiting_my_approval: Annotated[
        bool, typer.Option("--awaiting-my-approval", help="Only requests awaiting my approval, oldest first.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many requests (pages are followed).")] = 50,
    json_output: Json = False,
) -> ExitCode:
    """Requests you may see, newest first, with the API's filters."""
    params = {
        "state": state.value if state else None,
        "datalake_account": datalake_account,
        "remote_account": remote_account,
        "mine": mine,
        "awaiting_my_approval": awaiting_my_approval,
        "page_size": min(limit, 200),
    }
    with connect() as portal:
        rows = portal.pages("/requests/", params, limit=limit)
    if json_output:
        emit_json(rows)
    else:
        consoles(False)[0].print(requests_table(rows))
    return ExitCode.DONE


@command
def plan(request_id: RequestId, json_output: Json = False) -> ExitCode:
    """The exact documents and settings the request applies, and the plan's hash."""
    with connect() as portal:
        body = portal.get(f"/requests/{request_id}/plan/")
    if json_output:
        emit_json(body)
    else:
        consoles(False)[0].print(plan_view(str(request_id), body))
    return ExitCode.DONE


_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _moment(value: str | None, option: str) -> str | None:
    """ISO 8601 as given, or a span back from now (``90m``, ``24h``, ``7d``, ``2w``) as an ISO time."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip())
    if relative:
        span = timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
        return (datetime.now(timezone.utc) - span).isoformat(timespec="seconds")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise UsageProblem(f"{option} takes an ISO 8601 time or a span like 90m, 24h, 7d, 2w: {value!r}") from None
    return value


@command
def audit(
    since: Annotated[Optional[str], typer.Option(help="From this time: ISO 8601, or back from now: 90m, 24h, 7d, 2w.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Up to this time (same forms as --since).")] = None,
    request_id: Annotated[Optional[int], typer.Option("--request", min=1, help="Only events of this request.")] = None,
    account: Annotated[Optional[str], typer.Option(help="Only events about this account (12 digits).")] = None,
    actor: Annotated[Optional[str], typer.Option(help="Only events by this actor (a username, or worker).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many events (pages are followed).")] = 100,
    json_output: Json = False,
) -> ExitCode:
    """Audit events you may see, newest first."""
    params = {
        "since": _moment(since, "--since"),
        "until": _moment(until, "--until"),
        "request": request_id,
        "account": account,
        "actor": actor,
    }
    with connect() as portal:
        rows = portal.pages("/audit-events/", params, limit=limit)
    if json_output:
        emit_json(rows)
    else:
        consoles(False)[0].print(audit_table(rows))
    return ExitCode.DONE


@command
def export(
    request_id: RequestId,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="cloudformation (the DataLake role, YAML), json (the Remote documents) or cli (AWS CLI commands).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write it to this file instead of standard output.")] = None,
    json_output: Json = False,
) -> ExitCode:
    """Download the request's change, built from the plan the workers apply."""
    with connect() as portal:
        response = portal.get_raw(f"/requests/{request_id}/export/", {"format": fmt.value})
    content = response.text
    filename = _attachment_name(response.headers.get("Content-Disposition", ""))
    if output is not None:
        output.write_text(content)
    if json_output:
        emit_json(
            {
                "request": request_id,
                "format": fmt.value,
                "filename": filename,
                "content": response.json() if fmt == ExportFormat.json else content,
            }
        )
    elif output is None:
        sys.stdout.write(content if content.endswith("\n") else content + "\n")
    else:
        consoles(False)[1].print(f"Wrote {output}")
    return ExitCode.DONE


def _attachment_name(disposition: str) -> str | None:
    found = re.search(r'filename="([^"]+)"', disposition)
    return found.group(1) if found else None
