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
        ("Request set", detail.get("request_set") and f"{detail['request_set']} (approved with it: dms-access set approve)"),
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


# --- multi-grant requests ----------------------------------------------------------


def _states_text(states: dict) -> Text:
    text = Text()
    for number, (state, count) in enumerate(sorted((states or {}).items())):
        if number:
            text.append(", ")
        text.append(f"{count} ")
        text.append_text(state_text(state))
    return text


def set_view(detail: dict) -> Group:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")  # the plan hash whole, however narrow
    rows = [
        ("Multi-grant request", str(detail.get("id"))),
        ("Grants", _states_text(detail.get("states") or {})),
        ("Requester", detail.get("requester")),
        ("DataLake account", detail.get("datalake_account")),
        ("Remote account", detail.get("remote_account")),
        ("Justification", detail.get("justification")),
        ("Plan hash", detail.get("plan_hash") or "— (no grant awaits approval)"),
        ("Expires", detail.get("expires_at") or "never"),
        ("Created", (detail.get("created_at") or "")[:19]),
        ("You may", ", ".join(detail.get("allowed_actions") or []) or "—"),
    ]
    for label, value in rows:
        if value not in (None, ""):
            facts.add_row(label, value if isinstance(value, Text) else Text(str(value)))
    return Group(facts, Text(""), grants_table(detail.get("grants") or []))


def grants_table(grants: list[dict]) -> Table:
    table = Table(title="Grants (each a request of its own)", title_justify="left", show_edge=False)
    for column in ("request", "state", "engine", "type", "endpoint identifier", "secret name", "preflight"):
        table.add_column(column, overflow="fold")
    for grant in grants:
        table.add_row(
            *_cells(grant.get("id")),
            state_text(grant.get("state", "")),
            *_cells(
                grant.get("engine"),
                grant.get("endpoint_type"),
                grant.get("endpoint_identifier"),
                # One Remote account and region for every grant: the name tells the secrets apart.
                str(grant.get("secret_arn") or "").partition(":secret:")[2] or grant.get("secret_arn"),
                grant.get("preflight_status"),
            ),
        )
    return table


def sets_table(rows: list[dict]) -> Table:
    table = Table(show_edge=False)
    for column in ("id", "requester", "datalake", "remote", "justification", "expires", "created"):
        table.add_column(column)
    for row in rows:
        justification = row.get("justification") or ""
        table.add_row(
            *_cells(
                row.get("id"),
                row.get("requester"),
                row.get("datalake_account"),
                row.get("remote_account"),
                justification if len(justification) <= 60 else justification[:59] + "…",
                (row.get("expires_at") or "never")[:19],
                (row.get("created_at") or "")[:19],
            )
        )
    return table


def set_plan_view(set_id: str, plan: dict) -> Group:
    """The set's one plan: its grants, then every statement under the secret and the key it goes into
    (each one write), then the hash. ARNs and the hash are whole lines: folded, never cut short."""
    grants = Table(title="Grants in this plan", title_justify="left", show_edge=False)
    for column in ("request", "endpoint identifier", "engine", "type", "role"):
        grants.add_column(column, overflow="fold")
    for row in plan.get("grants") or []:
        grants.add_row(
            *_cells(row.get("request"), row.get("endpoint_identifier"), row.get("engine"), row.get("endpoint_type"),
                    row.get("role_name"))
        )  # fmt: skip
    parts: list[Any] = [grants]
    for kind, title in (("secrets", "Secret"), ("keys", "Key")):
        for policy in plan.get(kind) or []:
            statements = policy.get("statements") or []
            parts.append(Text(""))
            parts.append(Text(f"{title}, {len(statements)} statement(s) in one write:", style="bold"))
            parts.append(Text(str(policy.get("arn")), style="bold"))
            for entry in statements:
                document = entry.get("statement")
                parts.append(
                    Panel(
                        Syntax(json.dumps(document, indent=2), "json", word_wrap=True)
                        if document is not None
                        else Text("not known yet", style="dim"),
                        title=f"for request {entry.get('request')}",
                        title_align="left",
                    )
                )
    parts.append(Text(""))
    if plan.get("plan_hash"):
        parts.append(Text(f"Awaiting approval: request(s) {', '.join(map(str, plan.get('awaiting') or []))}"))
        parts.append(Text.assemble(("Plan hash of multi-grant request ", "bold"), (set_id, "bold"), ":"))
        parts.append(Text(str(plan["plan_hash"]), style="bold cyan"))
    else:
        parts.append(Text(f"No grant of multi-grant request {set_id} awaits approval: nothing to approve.", style="yellow"))
    return Group(*parts)
