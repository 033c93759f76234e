"""``dms-access login``: check a portal URL and token, and keep them."""
from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from dms_access_cli import config
from dms_access_cli.app import Json, command
from dms_access_cli.client import Portal
from dms_access_cli.errors import ExitCode, UsageProblem
from dms_access_cli.output import consoles, emit_json

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
