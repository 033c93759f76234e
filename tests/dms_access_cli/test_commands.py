"""``dms-access`` without a portal: its usage errors, its config file, its
HTTP client's retries, and that it stays in step with the API it calls.
(The commands against a live portal: tests/integration/test_cli.py.)"""
from __future__ import annotations

import inspect
import json
import stat
import tomllib
from io import StringIO
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from dms_access_cli import config
from dms_access_cli.client import Portal
from dms_access_cli.errors import ApiError, ExitCode, Unreachable
from dms_access_cli.follow import Followed, follow
from dms_access_cli.main import app
from dms_access_cli.reading import ExportFormat, State
from dms_access_cli.request_file import SUBMIT_FIELDS, read_requests

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(config.URL_VARIABLE, raising=False)
    monkeypatch.delenv(config.TOKEN_VARIABLE, raising=False)
    return tmp_path / "config"


def invoke(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), env=env or None)


# --- usage: exit 2, before anything is sent ---------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate",),
        ("reject", "5"),  # --reason is required
        ("export", "5", "--format", "pdf"),
        ("status", "abc"),
        ("status", "0"),
        ("list", "--state", "sleeping"),
        ("request",),  # no fields at all
        ("request", "--engine", "mysql", "--file", "requests.yaml"),
        ("audit", "--since", "yesterday"),
        ("extend", "5"),  # neither --expires-at nor --days
        ("wait", "5", "--for", "approved"),
        ("revoke", "5"),  # no terminal to confirm on, and no --yes
    ],
)
def test_bad_usage_exits_2_before_any_call(args):
    # The portal named cannot be reached: an attempt to call it would exit 1, not 2.
    result = invoke(*args, DMS_ACCESS_URL=UNREACHABLE, DMS_ACCESS_TOKEN="t")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Traceback" not in result.output


def test_not_logged_in_exits_2_and_says_how():
    result = invoke("status", "5")
    assert result.exit_code == ExitCode.USAGE
    assert "dms-access login" in result.output and "DMS_ACCESS_URL" in result.output


def test_unreachable_portal_is_one_line_and_exit_1():
    result = invoke("status", "5", DMS_ACCESS_URL=UNREACHABLE, DMS_ACCESS_TOKEN="t")
    assert result.exit_code == ExitCode.FAILED
    assert result.output.strip().count("\n") == 0 and "Cannot reach the portal" in result.output


@pytest.mark.parametrize("args", [("--help",), ("request", "--help"), ("approve", "--help")])
def test_help_documents_the_exit_codes(args):
    result = invoke(*args)
    assert result.exit_code == 0
    for code in ("0  done", "1  failed", "2  usage", "3  refused", "4  timed out"):
        assert code in result.output


# --- the request file --------------------------------------------------------------


def test_a_request_file_is_checked_whole_before_anything_is_filed(tmp_path):
    path = tmp_path / "requests.yaml"
    path.write_text("- engine: mysql\n  secret: x\n- 42\n")
    result = invoke("request", "--file", str(path), DMS_ACCESS_URL=UNREACHABLE, DMS_ACCESS_TOKEN="t")
    assert result.exit_code == ExitCode.USAGE
    assert "request 1: unknown field(s) secret" in result.output and "request 2: not a mapping" in result.output

    path.write_text("engine: [mysql\n")
    assert invoke("request", "--file", str(path), DMS_ACCESS_URL=UNREACHABLE, DMS_ACCESS_TOKEN="t").exit_code == 2


def test_yaml_numbers_and_times_reach_the_api_as_its_strings(tmp_path):
    path = tmp_path / "one.yml"
    path.write_text("datalake_account: 011111111111\nexpires_at: 2027-01-31T12:00:00Z\nengine: mysql\n")
    (entry,) = read_requests(path)
    assert entry == {"datalake_account": "011111111111", "expires_at": "2027-01-31T12:00:00Z", "engine": "mysql"}
    path = tmp_path / "many.json"
    path.write_text(json.dumps([{"engine": "mysql"}, {"engine": "postgres"}]))
    assert [entry["engine"] for entry in read_requests(path)] == ["mysql", "postgres"]


# --- the config file ----------------------------------------------------------------


def test_the_config_file_is_the_owners_alone(config_home):
    path = config_home / "dms-access" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)
    assert config.save(config.Settings(url="https://portal.example", token="secret-token")) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "https://portal.example", "token": "secret-token"}
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no staged copy left behind


def test_the_environment_wins_over_the_file_variable_by_variable(monkeypatch):
    config.save(config.Settings(url="https://file.example", token="file-token"))
    assert config.load() == config.Settings(url="https://file.example", token="file-token")
    monkeypatch.setenv(config.TOKEN_VARIABLE, "env-token")
    assert config.load() == config.Settings(url="https://file.example", token="env-token")
    monkeypatch.setenv(config.URL_VARIABLE, "https://env.example/")
    assert config.load() == config.Settings(url="https://env.example", token="env-token")


# --- the HTTP client ---------------------------------------------------------------


def portal_answering(*answers, seen: list) -> Portal:
    replies = iter(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return Portal(config.Settings(url="https://portal.example", token="t"), transport=httpx.MockTransport(handle))


def test_throttled_calls_are_sent_again_after_retry_after():
    seen: list = []
    portal = portal_answering(
        httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": "slow down", "code": "throttled"}),
        httpx.Response(200, json={"id": 7}),
        seen=seen,
    )
    assert portal.get("/requests/7/") == {"id": 7}
    assert len(seen) == 2 and seen[0].headers["Authorization"] == "Token t"


def test_a_creation_is_sent_again_with_the_same_key_only_when_it_has_one():
    seen: list = []
    lost = httpx.ReadError("connection reset")
    portal = portal_answering(lost, httpx.Response(201, json={"id": 8}), seen=seen)
    assert portal.post("/requests/", {"engine": "mysql"}, idempotency_key="k-1") == {"id": 8}
    assert [request.headers["Idempotency-Key"] for request in seen] == ["k-1", "k-1"]

    seen.clear()
    portal = portal_answering(lost, seen=seen)
    with pytest.raises(Unreachable, match="may or may not have been carried out"):
        portal.post("/requests/8/revoke/")
    assert len(seen) == 1


def test_error_answers_keep_the_apis_words_and_pick_the_exit_code():
    seen: list = []
    body = {"detail": "Some fields are not valid.", "code": "invalid", "errors": {"engine": ["Must be one of …"]}}
    portal = portal_answering(httpx.Response(400, json=body), httpx.Response(502, text="<html>bad gateway"), seen=seen)
    with pytest.raises(ApiError) as refused:
        portal.post("/requests/", {})
    assert refused.value.exit_code == ExitCode.REFUSED and refused.value.body == {**body, "status": 400}
    assert "  engine: Must be one of …" in refused.value.message
    with pytest.raises(ApiError) as failed:
        portal.get("/requests/")
    assert failed.value.exit_code == ExitCode.FAILED


# --- in step with the API and the packaging ----------------------------------------


def test_the_client_sends_what_the_api_reads():
    from requests_app.export import FORMATS
    from requests_app.grant_input import SUBMIT_INPUT
    from requests_app.models import RequestState

    assert set(SUBMIT_FIELDS) == {field.name for field in SUBMIT_INPUT}
    command = next(c for c in app.registered_commands if c.callback.__name__ == "request")
    options = set(inspect.signature(command.callback).parameters)
    assert set(SUBMIT_FIELDS) <= options, set(SUBMIT_FIELDS) - options
    assert [f.value for f in ExportFormat] == list(FORMATS)
    assert {s.value for s in State} == set(RequestState.values)


def test_the_console_script_is_declared_and_packaged():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["dms-access"] == "dms_access_cli.main:app"
    assert "dms_access_cli*" in project["tool"]["setuptools"]["packages"]["find"]["include"]


# --- following a request -------------------------------------------------------------


class ScriptedPortal:
    """Answers each read of a request with the next of ``states`` (then the last one again)."""

    def __init__(self, *states: str):
        self.states = list(states)
        self.reads = 0

    def get(self, path: str) -> dict:
        self.reads += 1
        state = self.states[min(self.reads, len(self.states) - 1)]
        return detail(state)


def detail(state: str) -> dict:
    done = state in ("active", "failed")
    steps = [
        {"phase": "grant", "name": "create_role", "status": "succeeded" if state != "approved" else "pending", "attempts": 1, "error": None},
        {"phase": "grant", "name": "create_endpoint", "status": {"active": "succeeded", "failed": "failed"}.get(state, "pending"), "attempts": 1 if done else 0, "error": "refused" if state == "failed" else None},
    ]
    return {"id": 9, "state": state, "steps": steps}


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize(
    ("states", "goal", "code"),
    [
        (("approved", "provisioning", "active"), "active", ExitCode.DONE),
        (("approved", "provisioning", "failed"), "active", ExitCode.FAILED),
        (("pending_approval", "rejected"), "active", ExitCode.FAILED),
        (("revoking", "revoked"), "revoked", ExitCode.DONE),
    ],
)
def test_following_ends_with_the_goal_or_a_failure(states, goal, code, terminal):
    screen = StringIO()
    console = Console(file=screen, force_terminal=terminal, width=120)
    portal = ScriptedPortal(*states)
    (item,) = follow(portal, [Followed(9, goal, detail(states[0]))], console=console, timeout=10, interval=0.1)
    assert item.exit_code == code and item.detail["state"] == states[-1]
    assert portal.reads == len(states) - 1  # one read per change here, none after it settled
    if not terminal:
        assert f"request 9: {states[-1]}" in screen.getvalue()


def test_following_stops_at_the_timeout_and_says_so():
    (item,) = follow(
        ScriptedPortal("pending_approval"),
        [Followed(9, "active", detail("pending_approval"))],
        console=Console(file=StringIO()),
        timeout=0.3,
        interval=0.1,
    )
    assert item.exit_code == ExitCode.TIMED_OUT


def test_every_command_takes_json_and_documents_the_exit_codes():
    names = [command.name or command.callback.__name__ for command in app.registered_commands]
    assert len(names) == 14
    for name in names:
        result = invoke(name, "--help")
        assert result.exit_code == 0 and "--json" in result.output and "3  refused" in result.output, name
