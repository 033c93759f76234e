"""Following requests until they settle, with a live display of their steps.

A request settles in ``active``, ``revoked``, or one of the states it cannot
leave on its own (``failed``, ``rejected``, ``cancelled``, ``expired``). The
command's goal (``active`` after filing or approving, ``revoked`` after
revoking) decides whether the settled state is done (0) or failed (1); a
deadline that passes first is timed out (4), and the request goes on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from dms_access_cli.client import Portal
from dms_access_cli.errors import ExitCode
from dms_access_cli.output import steps_table

SETTLED = frozenset({"active", "revoked", "failed", "rejected", "cancelled", "expired"})


@dataclass
class Followed:
    request_id: int
    goal: str
    detail: dict
    seen: dict = field(default_factory=dict)  # what was last reported, to print only changes

    @property
    def settled(self) -> bool:
        return self.detail.get("state") in SETTLED

    @property
    def exit_code(self) -> ExitCode:
        if not self.settled:
            return ExitCode.TIMED_OUT
        return ExitCode.DONE if self.detail.get("state") == self.goal else ExitCode.FAILED


def _current_steps(detail: dict) -> list[dict]:
    """The steps of the phase under way: revoke's once it has begun, else grant's."""
    steps = detail.get("steps") or []
    revoke = [step for step in steps if step.get("phase") == "revoke"]
    return revoke or [step for step in steps if step.get("phase") != "revoke"]


def follow(
    portal: Portal,
    followed: list[Followed],
    *,
    console: Console,
    timeout: float | None,
    interval: float,
    until_one_fails: bool = False,
) -> list[Followed]:
    """Poll each request until all settle (or, with ``until_one_fails``, one settles short of its goal)
    or ``timeout`` seconds pass; ``followed`` is updated in place."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def done() -> bool:
        if all(item.settled for item in followed):
            return True
        return until_one_fails and any(item.exit_code == ExitCode.FAILED for item in followed)

    if console.is_terminal:
        _follow_live(portal, followed, console=console, deadline=deadline, interval=interval, done=done)
    else:
        _follow_lines(portal, followed, console=console, deadline=deadline, interval=interval, done=done)
    return followed


def outcome(followed: list[Followed]) -> ExitCode:
    """Of requests followed together (a multi-grant request's grants): failed if any failed,
    else timed out if any has not settled, else done."""
    codes = {item.exit_code for item in followed}
    if ExitCode.FAILED in codes:
        return ExitCode.FAILED
    return ExitCode.TIMED_OUT if ExitCode.TIMED_OUT in codes else ExitCode.DONE


def _poll(portal: Portal, followed: list[Followed], deadline: float | None, interval: float, done):
    """Yield after each round of reads; stop when ``done()`` or the deadline passed."""
    while True:
        yield
        if done():
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        pause = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
        time.sleep(pause)
        for item in followed:
            if not item.settled:
                item.detail = portal.get(f"/requests/{item.request_id}/")


def _follow_lines(portal, followed, *, console, deadline, interval, done) -> None:
    # No terminal (a pipeline's log): a line for each change, nothing redrawn.
    for _ in _poll(portal, followed, deadline, interval, done):
        for item in followed:
            for step in _current_steps(item.detail):
                key = f"{step.get('phase')}:{step.get('name')}"
                mark = (step.get("status"), step.get("attempts"))
                if item.seen.get(key) != mark and step.get("status") != "pending":
                    error = f" — {step['error']}" if step.get("error") else ""
                    console.print(
                        f"request {item.request_id}: {step.get('phase')} {step.get('name')} {step.get('status')}"
                        f" (attempt {step.get('attempts')}){error}",
                        markup=False,
                    )
                item.seen[key] = mark
            state = item.detail.get("state")
            if item.seen.get("state") != state:
                console.print(f"request {item.request_id}: {state}")
                item.seen["state"] = state


def _follow_live(portal, followed, *, console, deadline, interval, done) -> None:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]request {task.fields[request_id]}[/] {task.fields[state]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks = {item.request_id: progress.add_task("", total=1, request_id=item.request_id, state="") for item in followed}

    def render():
        for item in followed:
            steps = _current_steps(item.detail)
            progress.update(
                tasks[item.request_id],
                total=max(len(steps), 1),
                completed=sum(1 for step in steps if step.get("status") == "succeeded"),
                state=item.detail.get("state", ""),
            )
        if len(followed) == 1:
            return Group(progress, steps_table(_current_steps(followed[0].detail)))
        return progress

    # transient: once settled, the command prints the request in full instead.
    with Live(render(), console=console, refresh_per_second=8, transient=True) as live:
        for _ in _poll(portal, followed, deadline, interval, done):
            live.update(render())
