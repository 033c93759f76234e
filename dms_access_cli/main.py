"""The ``dms-access`` command: each subcommand is one or two calls of the REST API."""
from __future__ import annotations

import enum
import functools
import os
import re
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from dms_access_cli import __version__, config
from dms_access_cli.client import Portal
from dms_access_cli.errors import EXIT_CODES_HELP, ApiError, CliError, ExitCode, UsageProblem
from dms_access_cli.follow import Followed, follow
from dms_access_cli.output import (
    audit_table,
    consoles,
    emit_json,
    plan_view,
    request_view,
    requests_table,
)
from dms_access_cli.request_file import SUBMIT_FIELDS, read_requests

app = typer.Typer(
    name="dms-access",
    help="Command-line client of the DMS Access Portal (its REST API).\n\n"
    "The portal and token come from DMS_ACCESS_URL / DMS_ACCESS_TOKEN, or else from `dms-access login`.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Json = Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON on standard output (messages go to standard error).")]
RequestId = Annotated[int, typer.Argument(min=1, metavar="ID", help="The request's id.", show_default=False)]
Wait = Annotated[bool, typer.Option("--wait", help="Follow the request's steps until it settles.")]
Timeout = Annotated[
    Optional[float],
    typer.Option("--timeout", min=0, help="With --wait: give up after this many seconds (exit 4). Default: no limit.", show_default=False),
]
Interval = Annotated[float, typer.Option("--interval", min=0.1, help="With --wait: seconds between reads.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")]


class ExportFormat(str, enum.Enum):
    cloudformation = "cloudformation"
    json = "json"
    cli = "cli"


class State(str, enum.Enum):
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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dms-access {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


def command(function=None, *, name: str | None = None):
    """Register a subcommand: a ``CliError`` becomes its message (or JSON body) and exit code; never a traceback."""
    if function is None:
        return functools.partial(command, name=name)

    @functools.wraps(function)
    def run(*args, **kwargs):
        json_output = bool(kwargs.get("json_output"))
        _, err = consoles(json_output)
        try:
            code = function(*args, **kwargs)
        except CliError as exc:
            if json_output and exc.exit_code != ExitCode.USAGE:  # a usage error, like typer's own, is for a person
                emit_json(exc.body)
            err.print(f"[red]Error:[/] {escape(exc.message)}")
            raise typer.Exit(int(exc.exit_code)) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            err.print("Interrupted.", markup=False)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Exception as exc:  # a defect of the client: one line, not a traceback
            err.print(f"[red]Error:[/] unexpected {type(exc).__name__}: {escape(str(exc))}")
            raise typer.Exit(int(ExitCode.FAILED)) from None
        raise typer.Exit(int(code or ExitCode.DONE))

    return app.command(name=name, epilog=EXIT_CODES_HELP)(run)


def _portal() -> Portal:
    return Portal(config.load())


def _confirm(question: str, *, yes: bool, json_output: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageProblem(f"{question} — no terminal to ask on: pass --yes to confirm.")
    if not typer.confirm(question, err=json_output):
        raise CliError("Nothing was done.", body={"detail": "Not confirmed; nothing was done.", "code": "not_confirmed"})


def _follow_one(portal: Portal, detail: dict, *, goal: str, timeout, interval, json_output: bool) -> tuple[dict, ExitCode]:
    out, _ = consoles(json_output)
    item = Followed(request_id=detail["id"], goal=goal, detail=detail)
    follow(portal, [item], console=out, timeout=timeout, interval=interval)
    return item.detail, item.exit_code


def _finish(detail: dict, code: ExitCode, *, json_output: bool, goal: str | None = None) -> ExitCode:
    out, err = consoles(json_output)
    if json_output:
        emit_json(detail)
    else:
        out.print(request_view(detail))
    if code == ExitCode.TIMED_OUT:
        err.print(f"Timed out: request {detail['id']} is still {detail.get('state')} (it goes on).", markup=False)
    elif code == ExitCode.FAILED:
        err.print(f"[red]Request {detail['id']} ended {escape(str(detail.get('state')))}[/], not {goal}.")
    return code


# --- login ---------------------------------------------------------------------


@command
def login(
    url: Annotated[Optional[str], typer.Option("--url", help="The portal's address, e.g. https://dms-access.example.com.")] = None,
    token: Annotated[
        Optional[str], typer.Option("--token", help="An API token (asked for, hidden, when not given).")
    ] = None,
    json_output: Json = False,
) -> ExitCode:
    """Check a portal URL and API token, and keep them in the config file (mode 0600).

    The file is $XDG_CONFIG_HOME/dms-access/config.json (~/.config/dms-access/config.json).
    DMS_ACCESS_URL and DMS_ACCESS_TOKEN, when set, take precedence over it.
    """
    out, err = consoles(json_output)
    stored = config.read_file()
    if url is None:
        url = typer.prompt("Portal URL", default=stored.get("url") or None, err=True)
    if token is None:
        token = typer.prompt("API token", hide_input=True, err=True)
    settings = config.Settings(url=config.normalise_url(url), token=token.strip())
    if not settings.token:
        raise UsageProblem("The token is empty.")
    with Portal(settings) as portal:
        portal.get("/accounts/")  # a refused token is a 401 here, and nothing is kept
    path = config.save(settings)
    for variable in (config.URL_VARIABLE, config.TOKEN_VARIABLE):
        if variable in os.environ:
            err.print(f"Note: {variable} is set and takes precedence over {path}.", markup=False)
    if json_output:
        emit_json({"url": settings.url, "config_file": str(path)})
    else:
        out.print(f"Logged in to {settings.url}; kept in {path} (mode 0600).", markup=False)
    return ExitCode.DONE


# --- filing ---------------------------------------------------------------------


@command
def request(
    datalake_account: Annotated[Optional[str], typer.Option(help="12-digit id of the DataLake account DMS runs in.")] = None,
    secret_arn: Annotated[Optional[str], typer.Option(help="Full ARN of the secret in the Remote account.")] = None,
    kms_key_arn: Annotated[Optional[str], typer.Option(help="The secret's KMS key (discovered when left out).")] = None,
    engine: Annotated[Optional[str], typer.Option(help="The DMS engine, e.g. postgres, mysql, oracle.")] = None,
    endpoint_identifier: Annotated[Optional[str], typer.Option(help="The DMS endpoint identifier.")] = None,
    endpoint_type: Annotated[Optional[str], typer.Option(help="source (default) or target.")] = None,
    database_name: Annotated[Optional[str], typer.Option(help="The database name.")] = None,
    role_name: Annotated[Optional[str], typer.Option(help="The IAM role's name (derived when left out).")] = None,
    replication_instance_arn: Annotated[
        Optional[str], typer.Option(help="A replication instance: verify runs a DMS connection test.")
    ] = None,
    justification: Annotated[Optional[str], typer.Option(help="Why DMS needs this secret.")] = None,
    expires_at: Annotated[Optional[str], typer.Option(help="When the grant is revoked (ISO 8601).")] = None,
    file: Annotated[
        Optional[Path],
        typer.Option("--file", "-f", help="A YAML or JSON file of one request (a mapping) or a list of them; keys as the flags, with underscores."),
    ] = None,
    idempotency_key: Annotated[
        Optional[str],
        typer.Option(help="Idempotency-Key to send (a file's entries get KEY-1, KEY-2, …): running the same command again files nothing new. Default: a fresh one per run."),
    ] = None,
    wait: Wait = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """File a request (flags), or every request of a file (--file); --wait follows them until active or failed.

    With --json: the request as the API answered (a file: a list, one item per entry, the
    request or the API's error with its HTTP status).
    """
    arguments = locals()  # the flags named as the API's fields (SUBMIT_FIELDS)
    given = {name: arguments[name] for name in SUBMIT_FIELDS if arguments[name] is not None}
    if file is not None and given:
        raise UsageProblem("Give the request's fields as flags or in --file, not both.")
    if file is None and not given:
        raise UsageProblem("Give the request's fields as flags (see --help), or --file.")
    bodies = read_requests(file) if file is not None else [given]
    base_key = idempotency_key or uuid.uuid4().hex
    out, err = consoles(json_output)
    results: list[dict] = []
    codes: list[ExitCode] = []
    with _portal() as portal:
        filed: list[Followed] = []
        for number, body in enumerate(bodies, start=1):
            key = base_key if file is None else f"{base_key}-{number}"
            label = f"request {number} of {file}" if file is not None else "request"
            try:
                detail = portal.post("/requests/", body, idempotency_key=key)
            except ApiError as exc:
                if file is None:
                    raise
                err.print(f"[red]{label}: refused:[/] {escape(exc.message)}")
                results.append(exc.body)
                codes.append(exc.exit_code)
                continue
            item = Followed(request_id=detail["id"], goal="active", detail=detail)
            filed.append(item)
            results.append(detail)
            err.print(
                f"Filed request {detail['id']} ({detail.get('endpoint_identifier')}): {detail.get('state')}, "
                f"preflight {detail.get('preflight_status')}",
                markup=False,
            )
        if wait and filed:
            follow(portal, filed, console=out, timeout=timeout, interval=interval)
            by_id = {item.request_id: item for item in filed}
            results = [by_id[row["id"]].detail if row.get("id") in by_id else row for row in results]
            codes.extend(item.exit_code for item in filed)
        else:
            codes.extend(ExitCode.DONE for _ in filed)
    code = max(codes, default=ExitCode.DONE)
    if file is None:
        return _finish(results[0], code, json_output=json_output, goal="active")
    if json_output:
        emit_json(results)
    else:
        out.print(requests_table([row for row in results if "id" in row]))
        for item in filed:
            if wait and item.exit_code != ExitCode.DONE:
                err.print(f"request {item.request_id}: {item.detail.get('state')}", markup=False)
    return code


@command
def wait(
    request_id: RequestId,
    until: Annotated[
        Optional[str],
        typer.Option("--for", help="active or revoked; default revoked for a request being revoked, else active."),
    ] = None,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Follow a request until it settles: 0 if it reached the state waited for, 1 if it ended otherwise."""
    if until not in (None, "active", "revoked"):
        raise UsageProblem("--for takes active or revoked.")
    with _portal() as portal:
        detail = portal.get(f"/requests/{request_id}/")
        goal = until or ("revoked" if detail.get("state") in ("revoking", "revoked") else "active")
        detail, code = _follow_one(portal, detail, goal=goal, timeout=timeout, interval=interval, json_output=json_output)
    return _finish(detail, code, json_output=json_output, goal=goal)


# --- reading ---------------------------------------------------------------------


@command
def status(request_id: RequestId, json_output: Json = False) -> ExitCode:
    """A request: its state, plan hash, steps and diagnosis."""
    with _portal() as portal:
        detail = portal.get(f"/requests/{request_id}/")
    return _finish(detail, ExitCode.DONE, json_output=json_output)


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
    with _portal() as portal:
        rows = portal.pages("/requests/", params, limit=limit)
    if json_output:
        emit_json(rows)
    else:
        consoles(False)[0].print(requests_table(rows))
    return ExitCode.DONE


@command
def plan(request_id: RequestId, json_output: Json = False) -> ExitCode:
    """The exact documents and settings the request applies, and the plan's hash."""
    with _portal() as portal:
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
    with _portal() as portal:
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
    with _portal() as portal:
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


# --- deciding and changing -------------------------------------------------------


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
    with _portal() as portal:
        body = portal.get(f"/requests/{request_id}/plan/")
        seen = plan_hash or body.get("plan_hash")
        if not (json_output and yes):
            out.print(plan_view(str(request_id), body))
        _confirm(f"Approve request {request_id} with plan hash {seen}?", yes=yes, json_output=json_output)
        detail = portal.post(f"/requests/{request_id}/approve/", {"plan_hash": seen, "comment": comment})
        code = ExitCode.DONE
        if wait:
            detail, code = _follow_one(portal, detail, goal="active", timeout=timeout, interval=interval, json_output=json_output)
    return _finish(detail, code, json_output=json_output, goal="active")


@command
def reject(
    request_id: RequestId,
    reason: Annotated[str, typer.Option("--reason", help="Why (required); the requester reads it.")],
    json_output: Json = False,
) -> ExitCode:
    """Reject a request awaiting approval."""
    with _portal() as portal:
        detail = portal.post(f"/requests/{request_id}/reject/", {"comment": reason})
    return _finish(detail, ExitCode.DONE, json_output=json_output)


@command
def cancel(request_id: RequestId, json_output: Json = False) -> ExitCode:
    """Cancel your request while it awaits approval."""
    with _portal() as portal:
        detail = portal.post(f"/requests/{request_id}/cancel/")
    return _finish(detail, ExitCode.DONE, json_output=json_output)


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
    _confirm(f"Revoke request {request_id}? DMS loses access to the secret.", yes=yes, json_output=json_output)
    with _portal() as portal:
        detail = portal.post(f"/requests/{request_id}/revoke/")
        code = ExitCode.DONE
        if wait:
            detail, code = _follow_one(portal, detail, goal="revoked", timeout=timeout, interval=interval, json_output=json_output)
    return _finish(detail, code, json_output=json_output, goal="revoked")


@command
def retry(
    request_id: RequestId,
    wait: Wait = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Run a failed request's failed steps again (done steps stay done)."""
    with _portal() as portal:
        detail = portal.post(f"/requests/{request_id}/retry/")
        code = ExitCode.DONE
        if wait:
            detail, code = _follow_one(portal, detail, goal="active", timeout=timeout, interval=interval, json_output=json_output)
    return _finish(detail, code, json_output=json_output, goal="active")


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
    with _portal() as portal:
        detail = portal.post(
            f"/requests/{request_id}/extend/", {"expires_at": expires_at, "justification": justification}
        )
    out, _ = consoles(json_output)
    code = _finish(detail, ExitCode.DONE, json_output=json_output)
    if not json_output and detail.get("pending_extension"):
        out.print(f"Extension to {detail['pending_extension'].get('expires_at')} awaits the Remote approvers.", markup=False)
    return code
