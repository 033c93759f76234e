"""The ``dms-access`` application: its options, and what every command shares —
its errors turned into exit codes, the portal it calls, confirming, following
and showing a request."""
from __future__ import annotations

import functools
import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape

from dms_access_cli import __version__, config
from dms_access_cli.client import Portal
from dms_access_cli.errors import EXIT_CODES_HELP, CliError, ExitCode, UsageProblem
from dms_access_cli.follow import Followed, follow
from dms_access_cli.output import consoles, emit_json, request_view

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


def command(function=None, *, name: str | None = None, group: typer.Typer | None = None):
    """Register a subcommand (of ``group``, else of ``dms-access``): a ``CliError`` becomes its message (or
    JSON body) and exit code; never a traceback."""
    if function is None:
        return functools.partial(command, name=name, group=group)

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

    return (group or app).command(name=name, epilog=EXIT_CODES_HELP)(run)


def connect() -> Portal:
    """The portal of the environment or the config file."""
    return Portal(config.load())


def confirm(question: str, *, yes: bool, json_output: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageProblem(f"{question} — no terminal to ask on: pass --yes to confirm.")
    if not typer.confirm(question, err=json_output):
        raise CliError("Nothing was done.", body={"detail": "Not confirmed; nothing was done.", "code": "not_confirmed"})


def follow_one(portal: Portal, detail: dict, *, goal: str, timeout, interval, json_output: bool) -> tuple[dict, ExitCode]:
    out, _ = consoles(json_output)
    item = Followed(request_id=detail["id"], goal=goal, detail=detail)
    follow(portal, [item], console=out, timeout=timeout, interval=interval)
    return item.detail, item.exit_code


def finish(detail: dict, code: ExitCode, *, json_output: bool, goal: str | None = None) -> ExitCode:
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
