"""How answers are shown: rich tables for people, the API's JSON for scripts.

With ``--json`` standard output carries exactly one JSON document (the API's
answer) and everything meant for a person goes to standard error.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

STATE_STYLES = {
    "active": "green",
    "revoked": "dim",
    "failed": "red",
    "rejected": "red",
    "cancelled": "dim",
    "expired": "dim",
    "needs_reapproval": "yellow",
    "pending_approval": "yellow",
}
STEP_MARKS = {"succeeded": "[green]✔[/]", "failed": "[red]✘[/]", "running": "[cyan]…[/]", "pending": "[dim]·[/]"}
def consoles(json_output: bool) -> tuple[Console, Console]:
    """(for people, for errors): both on standard error when standard output carries JSON."""
    # soft_wrap: a message stays one line however narrow the terminal (logs, grep).
    # emoji off: ":secret:" in an ARN is not a picture.
    err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    return (err if json_output else Console(highlight=False, emoji=False)), err


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, "cyan"))


def request_view(detail: dict) -> Group:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    rows = [
        ("Request", str(detail.get("id"))),
        ("State", state_text(detail.get("state", "?"))),
        ("Requester", detail.get("requester")),
        ("DataLake account", detail.get("datalake_account")),
        ("Remote account", f"{detail.get('remote_account')} ({detail.get('region')})"),
        ("Secret", detail.get("secret_arn")),
        ("Engine", f"{detail.get('engine')} {detail.get('endpoint_type')}"),
        ("Endpoint identifier", detail.get("endpoint_identifier")),
        ("Role", detail.get("role_arn") or detail.get("role_name")),
        ("Endpoint", detail.get("endpoint_arn")),
        ("Plan hash", detail.get("plan_hash")),
        ("Preflight", detail.get("preflight_status")),
        ("Expires", detail.get("expires_at") or "never"),
        ("You may", ", ".join(detail.get("allowed_actions") or []) or "—"),
    ]
    for label, value in rows:
        if value not in (None, ""):
            facts.add_row(label, value if isinstance(value, Text) else Text(str(value)))
    parts: list[Any] = [facts]
    if detail.get("steps"):
        parts.append(steps_table(detail["steps"]))
    diagnosis = detail.get("diagnosis_detail")
    if diagnosis:
        parts.append(
            Panel(
                Text(diagnosis.get("remediation") or ""),
                title=Text(f"{diagnosis.get('code')}: {diagnosis.get('title')}", style="red"),
            )
        )
    return Group(*parts)


def _cells(*values: Any) -> list[Text]:
    # The API's words are shown as they are: never read as rich markup.
    return [Text("" if value is None else str(value)) for value in values]


def steps_table(steps: list[dict]) -> Table:
    table = Table(title="Steps", title_justify="left", show_edge=False)
    for column in ("", "phase", "step", "status", "attempts", "error"):
        table.add_column(column)
    for step in steps:
        table.add_row(
            STEP_MARKS.get(step.get("status"), "?"),
            *_cells(step.get("phase"), step.get("name"), step.get("status"), step.get("attempts"), step.get("error")),
        )
    return table


def requests_table(rows: list[dict]) -> Table:
    table = Table(show_edge=False)
    for column in ("id", "state", "requester", "datalake", "remote", "engine", "endpoint identifier", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *_cells(row.get("id")),
            state_text(row.get("state", "")),
            *_cells(
                row.get("requester"),
                row.get("datalake_account"),
                row.get("remote_account"),
                row.get("engine"),
                row.get("endpoint_identifier"),
                (row.get("created_at") or "")[:19],
            ),
        )
    return table


def audit_table(rows: list[dict]) -> Table:
    table = Table(show_edge=False)
    for column in ("time", "actor", "action", "request", "account", "target"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *_cells(
                (row.get("created_at") or "")[:19],
                row.get("actor"),
                row.get("action"),
                row.get("request"),
                row.get("account"),
                row.get("target_arn"),
            )
        )
    return table


def plan_view(request_id: str, plan: dict) -> Group:
    parts: list[Any] = []
    for name, document in plan.items():
        if name == "plan_hash":
            continue
        body = Syntax(json.dumps(document, indent=2), "json") if document is not None else Text("not known yet", style="dim")
        parts.append(Panel(body, title=name, title_align="left"))
    parts.append(
        Text.assemble(("Plan hash of request ", "bold"), (request_id, "bold"), ": ", (str(plan.get("plan_hash")), "bold cyan"))
    )
    return Group(*parts)
