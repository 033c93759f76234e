"""Multi-grant requests: ``dms-access set …`` (filing one is ``dms-access request --file``).

A multi-grant request names several grants; its Remote account's approvers
approve its one plan, grouped by secret and key, once. Each grant is also a
request of its own: ``status``, ``retry`` and ``revoke`` take a grant's request
id to act on that grant alone.
"""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape

from dms_access_cli.app import Interval, Json, Timeout, Wait, Yes, app, command, confirm, connect
from dms_access_cli.client import Portal
from dms_access_cli.errors import EXIT_CODES_HELP, ExitCode, UsageProblem
from dms_access_cli.follow import Followed, follow, outcome
from dms_access_cli.output import consoles, emit_json, set_plan_view, set_view, sets_table

set_app = typer.Typer(
    name="set",
    help="Multi-grant requests: one request naming several grants, approved once through one plan.\n\n"
    "File one with `dms-access request --file F` (a file with grants:). Each grant is also a request of its "
    "own: `dms-access status|retry|revoke REQUEST_ID` act on that grant alone.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(set_app, name="set")

SetId = Annotated[int, typer.Argument(min=1, metavar="ID", help="The multi-grant request's id.", show_default=False)]
SET_WAIT = "Follow the grants' steps until each settles, or one fails."


def follow_set(
    portal: Portal, detail: dict, *, goal: str, timeout, interval, json_output: bool, only: set[int] | None = None
) -> tuple[dict, ExitCode, list[Followed]]:
    """Follow the set's grants (those in ``only``, else all) until all reach ``goal``, one ends
    otherwise (1), or the time runs out (4); then the set as it is now."""
    out, _ = consoles(json_output)
    followed = [
        Followed(request_id=grant["id"], goal=goal, detail=grant)
        for grant in detail.get("grants") or []
        if only is None or grant["id"] in only
    ]
    if not followed:
        return detail, ExitCode.DONE, followed
    follow(portal, followed, console=out, timeout=timeout, interval=interval, until_one_fails=True)
    return portal.get(f"/request-sets/{detail['id']}/"), outcome(followed), followed


def finish_set(detail: dict, code: ExitCode, *, json_output: bool, followed: list[Followed] = (), goal: str = "") -> ExitCode:
    out, err = consoles(json_output)
    if json_output:
        emit_json(detail)
    else:
        out.print(set_view(detail))
    for item in followed:
        state = item.detail.get("state")
        if item.exit_code == ExitCode.FAILED:
            err.print(
                f"[red]Grant {item.request_id} ({escape(str(item.detail.get('endpoint_identifier')))}) ended "
                f"{escape(str(state))}[/], not {goal}: see `dms-access status {item.request_id}`."
            )
        elif item.exit_code == ExitCode.TIMED_OUT and code == ExitCode.TIMED_OUT:
            err.print(f"Timed out: grant {item.request_id} is still {state} (it goes on).", markup=False)
    if code == ExitCode.FAILED and any(item.exit_code == ExitCode.TIMED_OUT for item in followed):
        err.print("The other grants go on: `dms-access set wait " f"{detail.get('id')}` follows them.", markup=False)
    return code


@command(name="list", group=set_app)
def list_sets(
    limit: Annotated[int, typer.Option(min=1, help="At most this many (pages are followed).")] = 50,
    json_output: Json = False,
) -> ExitCode:
    """Multi-grant requests you may see (you see one of their grants at least), newest first."""
    with connect() as portal:
        rows = portal.pages("/request-sets/", {"page_size": min(limit, 200)}, limit=limit)
    if json_output:
        emit_json(rows)
    else:
        consoles(False)[0].print(sets_table(rows))
    return ExitCode.DONE


@command(name="status", group=set_app)
def status(set_id: SetId, json_output: Json = False) -> ExitCode:
    """A multi-grant request: its grants and their states, the plan hash to approve, what you may do."""
    with connect() as portal:
        detail = portal.get(f"/request-sets/{set_id}/")
    return finish_set(detail, ExitCode.DONE, json_output=json_output)


@command(name="plan", group=set_app)
def plan(set_id: SetId, json_output: Json = False) -> ExitCode:
    """The one plan of the grants awaiting approval: every statement grouped by the secret and the key it
    goes into (one write each), and the plan's hash. With --json: each grant's documents too."""
    with connect() as portal:
        body = portal.get(f"/request-sets/{set_id}/plan/")
    if json_output:
        emit_json(body)
    else:
        consoles(False)[0].print(set_plan_view(str(set_id), body))
    return ExitCode.DONE


@command(name="wait", group=set_app)
def wait(
    set_id: SetId,
    until: Annotated[
        Optional[str],
        typer.Option("--for", help="active or revoked; default revoked when every grant is revoking or revoked, else active."),
    ] = None,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Follow every grant until all reach the state waited for (0), or one ends otherwise (1)."""
    if until not in (None, "active", "revoked"):
        raise UsageProblem("--for takes active or revoked.")
    with connect() as portal:
        detail = portal.get(f"/request-sets/{set_id}/")
        states = {grant.get("state") for grant in detail.get("grants") or []}
        goal = until or ("revoked" if states and states <= {"revoking", "revoked"} else "active")
        detail, code, followed = follow_set(portal, detail, goal=goal, timeout=timeout, interval=interval,
                                            json_output=json_output)  # fmt: skip
    return finish_set(detail, code, json_output=json_output, followed=followed, goal=goal)


@command(name="approve", group=set_app)
def approve(
    set_id: SetId,
    comment: Annotated[str, typer.Option(help="Kept with your decision.")] = "",
    plan_hash: Annotated[
        Optional[str],
        typer.Option(help="Approve this plan hash (e.g. the one you reviewed on the page) instead of the one shown now."),
    ] = None,
    yes: Yes = False,
    wait: Annotated[bool, typer.Option("--wait", help=SET_WAIT)] = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Show the set's one plan and its hash, ask to confirm (unless --yes), and approve exactly that plan:
    every grant awaiting approval, at once.

    If any grant's plan changed in between, nothing is decided: exit 3 with the current hash.
    """
    out, _ = consoles(json_output)
    with connect() as portal:
        body = portal.get(f"/request-sets/{set_id}/plan/")
        seen = plan_hash or body.get("plan_hash")
        if not (json_output and yes):
            out.print(set_plan_view(str(set_id), body))
        awaiting = body.get("awaiting") or []
        # With nothing awaiting approval (no hash) there is nothing to confirm: the API's refusal says why.
        confirm(
            f"Approve multi-grant request {set_id} ({len(awaiting)} grant(s)) with plan hash {seen}?",
            yes=yes or not seen, json_output=json_output,
        )  # fmt: skip
        detail = portal.post(f"/request-sets/{set_id}/approve/", {"plan_hash": seen, "comment": comment})
        followed: list[Followed] = []
        code = ExitCode.DONE
        if wait:
            detail, code, followed = follow_set(portal, detail, goal="active", timeout=timeout, interval=interval,
                                                json_output=json_output, only=set(awaiting))  # fmt: skip
    return finish_set(detail, code, json_output=json_output, followed=followed, goal="active")


@command(name="reject", group=set_app)
def reject(
    set_id: SetId,
    reason: Annotated[str, typer.Option("--reason", "--comment", help="Why (required); the requester reads it.")],
    json_output: Json = False,
) -> ExitCode:
    """Reject every grant awaiting a first decision."""
    with connect() as portal:
        detail = portal.post(f"/request-sets/{set_id}/reject/", {"comment": reason})
    return finish_set(detail, ExitCode.DONE, json_output=json_output)


@command(name="revoke", group=set_app)
def revoke(
    set_id: SetId,
    yes: Yes = False,
    wait: Annotated[bool, typer.Option("--wait", help=SET_WAIT)] = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Revoke every active or failed grant of the set (one grant alone: `dms-access revoke REQUEST_ID`).
    Asks to confirm unless --yes."""
    confirm(
        f"Revoke every grant of multi-grant request {set_id}? DMS loses access to their secrets.",
        yes=yes, json_output=json_output,
    )  # fmt: skip
    with connect() as portal:
        detail = portal.post(f"/request-sets/{set_id}/revoke/")
        followed: list[Followed] = []
        code = ExitCode.DONE
        if wait:
            revoking = {grant["id"] for grant in detail.get("grants") or [] if grant.get("state") in ("revoking", "revoked")}
            detail, code, followed = follow_set(portal, detail, goal="revoked", timeout=timeout, interval=interval,
                                                json_output=json_output, only=revoking)  # fmt: skip
    return finish_set(detail, code, json_output=json_output, followed=followed, goal="revoked")
