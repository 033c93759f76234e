"""The container image: what it runs, as whom, and what it must never contain."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from celery import Celery
from celery.app.utils import find_app

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_image_builds_from_python_311_slim_with_pinned_dependencies():
    instructions = _instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = [args for op, args in instructions if op == "RUN"]
    assert any("pip install -c constraints.txt ." in args for args in runs)
    assert any("collectstatic --noinput" in args for args in runs)


def test_processes_run_as_a_non_root_user():
    instructions = _instructions()
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}
    last_user = max(i for i, (op, _) in enumerate(instructions) if op == "USER")
    assert all(op != "RUN" for op, _ in instructions[last_user:])


def test_default_command_serves_the_wsgi_app_with_gunicorn():
    (cmd,) = [args for op, args in _instructions() if op == "CMD"]
    assert json.loads(cmd) == ["gunicorn", "portal.wsgi:application", "-b", "0.0.0.0:8000"]
    assert callable(importlib.import_module("portal.wsgi").application)


def test_celery_finds_the_app_the_worker_and_beat_commands_name():
    assert isinstance(find_app("portal"), Celery)


def test_local_secrets_and_checkouts_stay_out_of_the_build_context():
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".env.*", ".git", ".venv"} <= ignored
    assert not any(line.startswith("!.env") for line in ignored)
