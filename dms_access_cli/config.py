"""Where the client finds the portal and its token.

``DMS_ACCESS_URL`` and ``DMS_ACCESS_TOKEN`` win, each on its own, over the
file ``dms-access login`` writes: ``$XDG_CONFIG_HOME/dms-access/config.json``
(``~/.config/dms-access/config.json`` when XDG_CONFIG_HOME is unset). The file
holds a token, so it is written readable by its owner only (0600, in a 0700
directory), replaced whole so a reader never sees half of it.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dms_access_cli.errors import UsageProblem

URL_VARIABLE = "DMS_ACCESS_URL"
TOKEN_VARIABLE = "DMS_ACCESS_TOKEN"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dms-access" / "config.json"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageProblem(f"The portal URL must start with https:// (or http://): {url!r}")
    return url


def read_file() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"Cannot read {path}: {exc}. Run `dms-access login` again.") from None
    return data if isinstance(data, dict) else {}


def load() -> Settings:
    """The portal URL and token to use: the environment first, then the file."""
    stored = read_file()
    url = os.environ.get(URL_VARIABLE) or stored.get("url") or ""
    token = os.environ.get(TOKEN_VARIABLE) or stored.get("token") or ""
    if not url or not token:
        missing = " and ".join(name for name, value in (("URL", url), ("token", token)) if not value)
        raise UsageProblem(
            f"No portal {missing}: run `dms-access login`, or set {URL_VARIABLE} and {TOKEN_VARIABLE}."
        )
    return Settings(url=normalise_url(url), token=token.strip())


def save(settings: Settings) -> Path:
    """Write the file with mode 0600 (its directory 0700); returns its path."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"url": settings.url, "token": settings.token}, indent=2) + "\n"
    # mkstemp creates the file 0600 from the start: the token is never readable by others, not even briefly.
    handle, staged = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as staged_file:
            staged_file.write(body)
        os.chmod(staged, 0o600)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return path
