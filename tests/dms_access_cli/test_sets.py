"""``dms-access`` and multi-grant requests, against a fake of the portal's API:
the file's shape, filing it, following its grants, and the ``set`` commands.
(Against a live portal: tests/integration/test_cli.py.)"""
from __future__ import annotations

import hashlib
import json
import re
from io import StringIO

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from dms_access_cli import config
from dms_access_cli.client import Portal
from dms_access_cli.errors import ExitCode
from dms_access_cli.follow import Followed, follow, outcome
from dms_access_cli.main import app
from dms_access_cli.request_file import GRANT_FIELDS, SET_FIELDS, read_request_file, read_requests
from dms_access_cli.sets import set_app

SECRET = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/orders-AbCdEf"
OTHER_SECRET = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/billing-GhIjKl"
KEY = "arn:aws:kms:eu-west-1:222222222222:key/1111-2222"
SET_FILE = f"""
datalake_account: 011111111111
justification: Nightly CDC of three databases.
expires_at: 2027-01-31T12:00:00Z
grants:
  - secret_arn: {SECRET}
    engine: postgres
    endpoint_identifier: orders-a
    database_name: orders
  - secret_arn: {SECRET}
    engine: postgres
    endpoint_identifier: orders-b
    endpoint_type: target
  - secret_arn: {OTHER_SECRET}
    engine: mysql
    endpoint_identifier: billing
"""


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv(config.URL_VARIABLE, "https://portal.example")
    monkeypatch.setenv(config.TOKEN_VARIABLE, "t")


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


@pytest.fixture
def set_file(tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text(SET_FILE)
    return path


# --- a fake of the API's multi-grant requests ---------------------------------------


class FakeApi:
    """The request-sets API and each grant's ``/requests/{id}/``. After approval (or revoke), each read of
    a grant moves it one state along its ``after_approval`` (``after_revoke``) script."""

    def __init__(self):
        self.sets: dict[int, dict] = {}
        self.grants: dict[int, dict] = {}
        self.calls: list[httpx.Request] = []
        self.plan_version = 0
        self.after_approval: dict[str, list[str]] = {}  # endpoint identifier → states read after approval
        self.after_revoke = ["revoking", "revoked"]

    # answers
    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        path = request.url.path.removeprefix("/api/v1")
        body = json.loads(request.content) if request.content else {}
        for pattern, method, handler in (
            (r"/request-sets/", "POST", self.file),
            (r"/request-sets/", "GET", self.list),
            (r"/request-sets/(\d+)/", "GET", self.detail),
            (r"/request-sets/(\d+)/plan/", "GET", self.plan),
            (r"/request-sets/(\d+)/approve/", "POST", self.approve),
            (r"/request-sets/(\d+)/reject/", "POST", self.reject),
            (r"/request-sets/(\d+)/revoke/", "POST", self.revoke),
            (r"/requests/(\d+)/", "GET", self.grant),
        ):
            found = re.fullmatch(pattern, path)
            if found and request.method == method:
                ids = list(map(int, found.groups()))
                if ids and ids[0] not in (self.grants if path.startswith("/requests/") else self.sets):
                    break
                status, answer = handler(body, *ids)
                return httpx.Response(status, json=answer)
        return httpx.Response(404, json={"detail": "Not found.", "code": "not_found"})

    def file(self, body):
        errors = {
            f"grants.{index}.engine": ["This field is required."]
            for index, grant in enumerate(body["grants"])
            if "engine" not in grant
        }
        if errors:
            return 400, {"detail": "Some fields are not valid.", "code": "invalid", "errors": errors}
        set_id = len(self.sets) + 1
        ids = []
        for grant in body["grants"]:
            grant_id = 100 + len(self.grants)
            self.grants[grant_id] = {
                "id": grant_id, "state": "pending_approval", "endpoint_type": "source", **grant,
                "script": list(self.after_approval.get(grant["endpoint_identifier"], ["approved", "provisioning", "active"])),
            }  # fmt: skip
            ids.append(grant_id)
        self.sets[set_id] = {"id": set_id, "requester": "rita", **{k: body.get(k) for k in SET_FIELDS}, "ids": ids}
        return 201, self._set(set_id)

    def list(self, body):
        return 200, {"next": None, "results": [{k: v for k, v in s.items() if k != "ids"} for s in self.sets.values()]}

    def detail(self, body, set_id):
        return 200, self._set(set_id)

    def plan(self, body, set_id):
        awaiting = self._awaiting(set_id)
        by_secret: dict[str, list] = {}
        for grant_id in awaiting:
            grant = self.grants[grant_id]
            by_secret.setdefault(grant["secret_arn"], []).append(
                {"request": grant_id, "statement": {"Sid": f"Dms{grant_id}", "Action": "secretsmanager:GetSecretValue"}}
            )
        return 200, {
            "plan_hash": self._hash(set_id),
            "awaiting": awaiting,
            "grants": [{"request": i, **{k: self.grants[i].get(k) for k in ("endpoint_identifier", "engine", "secret_arn")}, "kms_key_arn": KEY} for i in awaiting],
            "secrets": [{"arn": arn, "statements": statements} for arn, statements in by_secret.items()],
            "keys": [{"arn": KEY, "statements": [{"request": i, "statement": {"Sid": f"DmsKey{i}"}} for i in awaiting]}] if awaiting else [],
        }  # fmt: skip

    def approve(self, body, set_id):
        if body.get("plan_hash") != self._hash(set_id):
            return 409, {"detail": "The plan changed since you saw it; review it again.", "code": "plan_changed",
                         "current_plan_hash": self._hash(set_id)}  # fmt: skip
        for grant_id in self._awaiting(set_id):
            self.grants[grant_id]["state"] = "approved"
        return 200, self._set(set_id)

    def reject(self, body, set_id):
        for grant_id in self._awaiting(set_id):
            self.grants[grant_id]["state"] = "rejected"
        return 200, self._set(set_id)

    def revoke(self, body, set_id):
        for grant_id in self.sets[set_id]["ids"]:
            grant = self.grants[grant_id]
            if grant["state"] in ("active", "failed"):
                grant["state"], grant["script"] = "revoking", list(self.after_revoke)
        return 200, self._set(set_id)

    def grant(self, body, grant_id):
        grant = self.grants[grant_id]
        if grant["state"] not in ("pending_approval", "needs_reapproval") and grant["script"]:
            grant["state"] = grant["script"].pop(0)
        return 200, self._summary(grant_id)

    # helpers
    def _awaiting(self, set_id):
        return [i for i in self.sets[set_id]["ids"] if self.grants[i]["state"] == "pending_approval"]

    def _hash(self, set_id):
        awaiting = self._awaiting(set_id)
        return hashlib.sha256(f"{awaiting}:{self.plan_version}".encode()).hexdigest() if awaiting else ""

    def _summary(self, grant_id):
        return {k: v for k, v in self.grants[grant_id].items() if k != "script"}

    def _set(self, set_id):
        grants = [self._summary(i) for i in self.sets[set_id]["ids"]]
        states: dict[str, int] = {}
        for grant in grants:
            states[grant["state"]] = states.get(grant["state"], 0) + 1
        return {
            **{k: v for k, v in self.sets[set_id].items() if k != "ids"},
            "remote_account": "222222222222", "states": states, "plan_hash": self._hash(set_id),
            "allowed_actions": [], "grants": grants,
        }  # fmt: skip

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [c for c in self.calls if c.method == method and c.url.path == "/api/v1" + path]


@pytest.fixture
def api(monkeypatch) -> FakeApi:
    fake = FakeApi()
    original = Portal.__init__

    def init(self, settings, *, timeout=60.0, transport=None):
        original(self, settings, timeout=timeout, transport=httpx.MockTransport(fake.handle))

    monkeypatch.setattr(Portal, "__init__", init)
    return fake


# --- the file's shape --------------------------------------------------------------


def test_a_file_with_grants_is_one_multi_grant_request_sent_as_written(set_file):
    read = read_request_file(set_file)
    assert read.requests is None
    body = read.request_set
    assert body["datalake_account"] == "011111111111" and body["expires_at"] == "2027-01-31T12:00:00Z"
    assert [grant["endpoint_identifier"] for grant in body["grants"]] == ["orders-a", "orders-b", "billing"]
    with pytest.raises(Exception, match="multi-grant request"):
        read_requests(set_file)


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("justification: x\nengine: mysql\ngrants: [{secret_arn: a}]\n",
         ["engine: belongs to each grant"]),
        ("justification: x\ngrants:\n  - {engine: mysql, justification: why}\n  - 42\n  - {secret: a}\n",
         ["grants.0.justification: is the request's own", "grants.1: not a mapping", "grants.2.secret: is not a field of a grant"]),
        ("justification: x\ngrants: []\n", ["grants: must be a list of grants"]),
        ("justification: x\ngrants: {engine: mysql}\nfoo: 1\n", ["foo: is not a field", "grants: must be a list of grants"]),
        ("- justification: x\n  grants: [{engine: mysql}]\n", ["request 1: a multi-grant request (grants:) is a file of its own"]),
    ],
)  # fmt: skip
def test_a_multi_grant_file_is_checked_for_its_shape_before_anything_is_sent(tmp_path, api, text, problems):
    path = tmp_path / "set.yaml"
    path.write_text(text)
    result = invoke("request", "--file", str(path))
    assert result.exit_code == ExitCode.USAGE, result.output
    for problem in problems:
        assert problem in result.output
    assert api.calls == []


def test_the_file_splits_fields_as_the_api_does():
    from requests_app.grant_input import GRANT_INPUT, SUBMIT_INPUT

    assert set(GRANT_FIELDS) == {field.name for field in GRANT_INPUT}
    assert set(SET_FIELDS) == {field.name for field in SUBMIT_INPUT if not field.per_grant}


# --- filing it ---------------------------------------------------------------------


def test_request_file_files_the_set_once_and_prints_it(set_file, api):
    result = invoke("request", "--file", str(set_file), "--json")
    assert result.exit_code == ExitCode.DONE, result.output
    (sent,) = api.sent("POST", "/request-sets/")
    assert json.loads(sent.content) == read_request_file(set_file).request_set
    assert sent.headers["Idempotency-Key"]  # a fresh one per run: a lost answer is sent again safely
    printed = json.loads(result.stdout)
    assert printed["id"] == 1 and printed["states"] == {"pending_approval": 3}
    assert api.sent("POST", "/requests/") == []

    shown = invoke("request", "--file", str(set_file))
    assert shown.exit_code == 0 and "Filed multi-grant request 2 with 3 grant(s): 3 pending_approval" in shown.output
    assert "orders-b" in shown.output and "billing" in shown.output


def test_per_grant_errors_are_shown_as_the_api_gave_them(tmp_path, api):
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"justification": "x", "grants": [{"engine": "mysql"}, {"secret_arn": SECRET}]}))
    result = invoke("request", "--file", str(path))
    assert result.exit_code == ExitCode.REFUSED
    assert "grants.1.engine: This field is required." in result.output
    assert f"grants.N is grant N of {path}, counting from 0" in result.output
    as_json = invoke("request", "--file", str(path), "--json")
    assert as_json.exit_code == ExitCode.REFUSED
    assert json.loads(as_json.stdout)["errors"] == {"grants.1.engine": ["This field is required."]}
    assert api.sets == {}


def test_an_idempotency_key_given_is_sent_as_the_sets_own(set_file, api):
    result = invoke("request", "--file", str(set_file), "--idempotency-key", "pipeline-run-7")
    assert result.exit_code == ExitCode.DONE, result.output
    (sent,) = api.sent("POST", "/request-sets/")
    assert sent.headers["Idempotency-Key"] == "pipeline-run-7"


def _approve_in_the_background(api: FakeApi):
    """The approvers approve as soon as the grants are first read (as a person would, meanwhile)."""
    original = api.grant

    def grant(body, grant_id):
        for set_id in api.sets:
            if grant_id in api.sets[set_id]["ids"] and api._awaiting(set_id):
                api.approve({"plan_hash": api._hash(set_id)}, set_id)
        return original(body, grant_id)

    api.grant = grant


def test_request_wait_follows_every_grant_until_all_are_active(set_file, api):
    _approve_in_the_background(api)
    result = invoke("request", "--file", str(set_file), "--wait", "--interval", "0.1", "--timeout", "20", "--json")
    assert result.exit_code == ExitCode.DONE, result.output
    assert json.loads(result.stdout)["states"] == {"active": 3}
    for grant_id in (100, 101, 102):
        assert f"request {grant_id}: active" in result.stderr


def test_request_wait_stops_at_the_first_failed_grant_and_exits_1(set_file, api):
    api.after_approval = {"orders-b": ["approved", "failed"], "billing": ["approved"] + ["provisioning"] * 100}
    _approve_in_the_background(api)
    result = invoke("request", "--file", str(set_file), "--wait", "--interval", "0.1", "--timeout", "20")
    assert result.exit_code == ExitCode.FAILED, result.output
    assert "Grant 101 (orders-b) ended failed, not active: see `dms-access status 101`." in result.stderr
    assert "dms-access set wait 1" in result.stderr  # billing goes on
    assert api.grants[102]["state"] == "provisioning"


def test_request_wait_times_out_with_4(set_file, api):
    result = invoke("request", "--file", str(set_file), "--wait", "--interval", "0.1", "--timeout", "0.5")
    assert result.exit_code == ExitCode.TIMED_OUT, result.output
    assert "Timed out: grant 100 is still pending_approval (it goes on)." in result.stderr


@pytest.mark.parametrize("terminal", [True, False])
def test_following_together_stops_when_one_fails(terminal):
    class Reads:
        def get(self, path):
            request_id = int(path.strip("/").split("/")[-1])
            return {"id": request_id, "state": "failed" if request_id == 1 else "provisioning", "steps": []}

    items = [Followed(1, "active", {"id": 1, "state": "approved"}), Followed(2, "active", {"id": 2, "state": "approved"})]
    console = Console(file=StringIO(), force_terminal=terminal, width=120)
    follow(Reads(), items, console=console, timeout=5, interval=0.1, until_one_fails=True)
    assert [item.exit_code for item in items] == [ExitCode.FAILED, ExitCode.TIMED_OUT]
    assert outcome(items) == ExitCode.FAILED
    assert outcome(items[1:]) == ExitCode.TIMED_OUT


# --- the set commands ---------------------------------------------------------------


@pytest.fixture
def filed(set_file, api) -> int:
    assert invoke("request", "--file", str(set_file)).exit_code == 0
    return 1


def test_set_plan_groups_statements_by_secret_and_key_with_the_hash(api, filed):
    result = invoke("set", "plan", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count(f"Secret, 2 statement(s) in one write:\n{SECRET}\n") == 1
    assert f"Secret, 1 statement(s) in one write:\n{OTHER_SECRET}\n" in out
    assert f"Key, 3 statement(s) in one write:\n{KEY}\n" in out
    assert "for request 100" in out and '"Sid": "Dms101"' in out
    assert f"Plan hash of multi-grant request 1:\n{api._hash(1)}\n" in result.stdout
    assert json.loads(invoke("set", "plan", "1", "--json").stdout)["plan_hash"] == api._hash(1)


def test_set_approve_shows_the_plan_and_sends_its_hash(api, filed):
    shown_hash = api._hash(1)
    assert invoke("set", "approve", "1").exit_code == ExitCode.USAGE  # no terminal, no --yes
    assert api.sent("POST", "/request-sets/1/approve/") == []
    result = invoke("set", "approve", "1", "--yes", "--comment", "fine")
    assert result.exit_code == ExitCode.DONE, result.output
    assert shown_hash in result.stdout and SECRET in result.stdout
    (sent,) = api.sent("POST", "/request-sets/1/approve/")
    assert json.loads(sent.content) == {"plan_hash": shown_hash, "comment": "fine"}
    assert "3 approved" in result.stdout


def test_set_approve_of_a_changed_plan_exits_3_with_the_current_hash(api, filed):
    result = invoke("set", "approve", "1", "--yes", "--plan-hash", "0" * 64, "--json")
    assert result.exit_code == ExitCode.REFUSED
    body = json.loads(result.stdout)
    assert body["status"] == 409 and body["code"] == "plan_changed" and body["current_plan_hash"] == api._hash(1)
    assert f"current plan hash: {api._hash(1)}" in result.stderr
    assert {grant["state"] for grant in api.grants.values()} == {"pending_approval"}


def test_set_approve_wait_follows_the_approved_grants(api, filed):
    result = invoke("set", "approve", "1", "--yes", "--wait", "--interval", "0.1", "--timeout", "20", "--json")
    assert result.exit_code == ExitCode.DONE, result.output
    assert json.loads(result.stdout)["states"] == {"active": 3}


def test_set_status_wait_reject_revoke_and_list(api, filed):
    status = invoke("set", "status", "1")
    assert status.exit_code == 0 and "Multi-grant request" in status.stdout and "orders-a" in status.stdout
    assert "3 pending_approval" in status.stdout

    assert invoke("set", "reject", "1").exit_code == ExitCode.USAGE  # --reason is required
    rejected = invoke("set", "reject", "1", "--comment", "not now", "--json")
    assert rejected.exit_code == 0 and json.loads(rejected.stdout)["states"] == {"rejected": 3}
    assert json.loads(api.sent("POST", "/request-sets/1/reject/")[0].content) == {"comment": "not now"}
    # Waiting for a set none of whose grants can become active: failed at once.
    assert invoke("set", "wait", "1", "--interval", "0.1").exit_code == ExitCode.FAILED

    for grant in api.grants.values():
        grant["state"], grant["script"] = "active", []
    assert invoke("set", "revoke", "1").exit_code == ExitCode.USAGE  # no terminal, no --yes
    revoked = invoke("set", "revoke", "1", "--yes", "--wait", "--interval", "0.1", "--timeout", "20", "--json")
    assert revoked.exit_code == ExitCode.DONE, revoked.output
    assert json.loads(revoked.stdout)["states"] == {"revoked": 3}
    assert invoke("set", "wait", "1", "--interval", "0.1").exit_code == ExitCode.DONE  # goal: revoked

    listed = invoke("set", "list", "--json")
    assert [row["id"] for row in json.loads(listed.stdout)] == [1]
    assert "Nightly CDC" in invoke("set", "list").stdout


def test_an_unknown_set_exits_3(api):
    result = invoke("set", "status", "7")
    assert result.exit_code == ExitCode.REFUSED and "HTTP 404" in result.output


def test_every_set_command_takes_json_and_documents_the_exit_codes():
    names = [command.name for command in set_app.registered_commands]
    assert names == ["list", "status", "plan", "wait", "approve", "reject", "revoke"]
    for name in names:
        result = invoke("set", name, "--help")
        assert result.exit_code == 0 and "--json" in result.output and "3  refused" in result.output, name
    assert "grants:" in invoke("request", "--help").output


def test_set_approve_with_nothing_awaiting_asks_nothing_and_shows_the_apis_refusal(api, filed, monkeypatch):
    def refuse(body, set_id):
        return 409, {"detail": "No grant of this request awaits approval.", "code": "invalid_transition"}

    monkeypatch.setattr(api, "approve", refuse)
    for grant in api.grants.values():
        grant["state"] = "rejected"
    result = invoke("set", "approve", "1")  # no terminal: a question would be a usage error (2)
    assert result.exit_code == ExitCode.REFUSED, result.output
    assert "nothing to approve" in result.stdout and "No grant of this request awaits approval." in result.stderr


def test_a_grants_status_names_its_set():
    from dms_access_cli.output import request_view

    console = Console(width=200, record=True)
    console.print(request_view({"id": 7, "state": "pending_approval", "request_set": 3}))
    assert re.search(r"Request set +3 \(approved with it: dms-access set approve\)", console.export_text())
    console = Console(width=200, record=True)
    console.print(request_view({"id": 8, "state": "pending_approval", "request_set": None}))
    assert "Request set" not in console.export_text()
