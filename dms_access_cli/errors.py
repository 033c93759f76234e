"""Exit codes and the errors that end a command with one.

The codes are part of the client's contract with scripts: ``EXIT_CODES_HELP``
says what each means, and is printed by ``--help``.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any


EXIT_CODES_HELP = """
Exit codes:

  0  done — the call succeeded; with --wait, the request reached the state waited for (active; revoked for revoke)

  1  failed — the request ended failed, rejected, cancelled, expired or revoked while waited for; or the portal could not be reached, answered 5xx, or answered something that is not the API's; or you answered no to a confirmation

  2  usage — bad flags or arguments, an unreadable request file, not logged in, or a confirmation needed with no terminal (pass --yes)

  3  refused — the portal answered 4xx and did nothing: 400 invalid input (fields listed), 401 token, 403 not allowed, 404 no such request (or not yours), 409 state does not allow it / plan changed / Idempotency-Key reused, 429 still throttled

  4  timed out — --wait --timeout ran out first (the request goes on)

  130  interrupted (Ctrl-C)

With several requests (request --file), the highest code of them; with the grants of a multi-grant request (set …, request --file with grants:), 1 if any failed, else 4 if any is still going, else 0. With --json, standard output holds one JSON document for every code but 2: the API's answer, or its error body with its HTTP "status".
"""


class ExitCode(IntEnum):
    DONE = 0
    FAILED = 1
    USAGE = 2
    REFUSED = 3
    TIMED_OUT = 4
    INTERRUPTED = 130


class CliError(Exception):
    """Ends the command: ``message`` on standard error, ``body`` as the --json answer."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.body = body if body is not None else {"detail": message}


class UsageProblem(CliError):
    exit_code = ExitCode.USAGE

    def __init__(self, message: str):
        super().__init__(message, body={"detail": message, "code": "usage"})


class Unreachable(CliError):
    """No answer from the portal (connection, TLS, timeout)."""

    def __init__(self, message: str):
        super().__init__(message, body={"detail": message, "code": "unreachable"})


class ApiError(CliError):
    """The portal answered with an error; ``body`` is its answer, as it is."""

    def __init__(self, status: int, body: dict[str, Any], message: str):
        super().__init__(message, body={**body, "status": status})
        self.status = status
        self.exit_code = ExitCode.REFUSED if 400 <= status < 500 else ExitCode.FAILED


def describe_api_error(status: int, body: dict[str, Any]) -> str:
    """The API's own words: its detail and code, then each field's messages on a line."""
    detail = body.get("detail") or f"HTTP {status}"
    code = body.get("code")
    lines = [f"{detail} (HTTP {status}{', ' + code if isinstance(code, str) else ''})"]
    errors = body.get("errors")
    if isinstance(errors, dict):
        for field, messages in errors.items():
            for message in messages if isinstance(messages, list) else [messages]:
                lines.append(f"  {field}: {message}")
    if body.get("current_plan_hash"):
        lines.append(f"  current plan hash: {body['current_plan_hash']}")
    return "\n".join(lines)
