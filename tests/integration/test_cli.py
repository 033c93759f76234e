"""``dms-access`` against a live portal: the command run as its console script
in a process of its own, talking HTTP to a web server (pytest-django's
live_server) whose requests real Celery workers provision in a moto server.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from requests_app.models import AccessRequest, RequestSet
from tests.factories import api_token_for
from tests.integration.world import SECRET_VALUE
from tests.requests_app.rows import APPROVER, DATALAKE_ID, REMOTE_ID, REQUESTER, portal_accounts, user

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def console_script() -> list[str]:
    """What the installed ``dms-access`` script runs: the entry point pyproject.toml declares."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["dms-access"]
    module, _, attribute = entry.partition(":")
    return [sys.executable, "-c", f"from {module} import {attribute}; {attribute}(prog_name='dms-access')"]


class Cli:
    """Runs ``dms-access`` as a person with a token would, with a config directory of its own."""

    def __init__(self, url: str, config_home: Path):
        self.url = url
        self.config_home = config_home
        self.tokens: dict[str, str] = {}

    def env(self, as_user: str | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMS_ACCESS_")}
        env.update(XDG_CONFIG_HOME=str(self.config_home), PYTHONPATH=str(ROOT), COLUMNS="200")
        if as_user is not None:
            env.update(DMS_ACCESS_URL=self.url, DMS_ACCESS_TOKEN=self.tokens[as_user])
        env.update(extra)
        return env

    def popen(self, *args: str, as_user: str | None, stdin=subprocess.DEVNULL, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*console_script(), *args],
            cwd=ROOT,
            env=self.env(as_user, **extra),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, as_user: str | None = REQUESTER, timeout: float = 180, **extra: str):
        process = self.popen(*args, as_user=as_user, **extra)
        stdout, stderr = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def answering(self, answer: str, *args: str, as_user: str, timeout: float = 180):
        """Run with a terminal on standard input, answering ``answer`` to the confirmation."""
        terminal, process_side = os.openpty()
        try:
            process = self.popen(*args, as_user=as_user, stdin=process_side)
            os.write(terminal, answer.encode() + b"\n")
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            os.close(terminal)
            os.close(process_side)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def json(self, *args: str, expect: int = 0, **kwargs):
        done = self.run(*args, "--json", **kwargs)
        assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
        return json.loads(done.stdout)


@pytest.fixture
def cli(live_server, moto_world, workers, tmp_path) -> Cli:
    portal_accounts()
    runner = Cli(live_server.url, tmp_path / "config")
    runner.tokens = {name: api_token_for(user(name)) for name in (REQUESTER, APPROVER)}
    runner.world = moto_world
    runner.workers = workers
    return runner


def request_flags(world, endpoint_identifier: str, **fields: str) -> list[str]:
    values = {
        "datalake-account": DATALAKE_ID,
        "secret-arn": world.secret_arn,
        "engine": "postgres",
        "endpoint-identifier": endpoint_identifier,
        "database-name": "orders",
        "justification": "Nightly CDC of the orders database into the lake.",
        **fields,
    }
    return [part for name, value in values.items() for part in (f"--{name}", value)]


def test_request_waits_while_the_approver_approves_the_plan_hash_then_active_then_revoked(cli):
    waiting = cli.popen(
        "request", *request_flags(cli.world, "cli-orders", **{"replication-instance-arn": cli.world.replication_instance_arn}),
        "--wait", "--timeout", "150", "--interval", "0.5", "--json", as_user=REQUESTER,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not AccessRequest.objects.filter(endpoint_identifier="cli-orders").exists():
            assert waiting.poll() is None and time.monotonic() < deadline, waiting.communicate()
            time.sleep(0.1)
        (row,) = cli.json("list", "--awaiting-my-approval", as_user=APPROVER)
        request_id = row["id"]
        plan = cli.json("plan", str(request_id), as_user=APPROVER)
        assert plan["endpoint_settings"]["PostgreSQLSettings"]["SecretsManagerSecretId"] == cli.world.secret_arn

        approve = cli.run("approve", str(request_id), "--yes", "--comment", "fine", as_user=APPROVER)
        assert approve.returncode == 0, approve.stderr
        # The plan and its hash were shown before the approval was sent.
        assert plan["plan_hash"] in approve.stdout and "secret_policy_statement" in approve.stdout

        stdout, stderr = waiting.communicate(timeout=150)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, (stdout, stderr, cli.workers.logs())
    active = json.loads(stdout)
    assert active["id"] == request_id and active["state"] == "active"
    assert {step["status"] for step in active["steps"]} == {"succeeded"}
    (decision,) = active["decisions"]
    assert decision["approver"] == APPROVER and decision["plan_hash"] == plan["plan_hash"] == active["plan_hash"]
    assert f"request {request_id}: active" in stderr  # the steps were followed, as lines without a terminal

    status = cli.run("status", str(request_id))
    assert status.returncode == 0 and "active" in status.stdout and "create_endpoint" in status.stdout
    events = cli.json("audit", "--since", "1h", "--request", str(request_id))
    assert events[0]["action"] == "request.active" and {e["request"] for e in events} == {request_id}
    commands = cli.run("export", str(request_id), "--format", "cli")
    assert commands.returncode == 0 and "aws iam create-role" in commands.stdout, commands
    exported = cli.json("export", str(request_id), "--format", "json", as_user=APPROVER)
    assert exported["format"] == "json" and isinstance(exported["content"], dict)

    revoked = cli.json("revoke", str(request_id), "--yes", "--wait", "--timeout", "120", "--interval", "0.5")
    assert revoked["state"] == "revoked"
    assert cli.world.endpoints("cli-orders") == []


def test_refusals_exit_3_with_the_apis_words(cli):
    filed = cli.json("request", *request_flags(cli.world, "cli-refused"))
    request_id = str(filed["id"])
    assert filed["state"] == "pending_approval" and filed["preflight_status"] == "passed"

    # 403: a requester may not approve; the API's message is shown as it is, without a traceback.
    own = cli.run("approve", request_id, "--yes")
    assert own.returncode == 3, own
    assert "HTTP 403" in own.stderr and "Traceback" not in own.stderr + own.stdout

    # 409: the plan named is not the current one; nothing is decided, the current hash is given.
    stale = cli.run("approve", request_id, "--yes", "--plan-hash", "0" * 64, "--json", as_user=APPROVER)
    assert stale.returncode == 3, stale
    body = json.loads(stale.stdout)
    assert body["status"] == 409 and body["code"] == "plan_changed" and body["current_plan_hash"] == filed["plan_hash"]
    assert cli.json("status", request_id)["decisions"] == []

    # Without --yes: no terminal to ask on is a usage error (2); "no" on a terminal decides nothing (1).
    assert cli.run("approve", request_id, as_user=APPROVER).returncode == 2
    declined = cli.answering("n", "approve", request_id, as_user=APPROVER)
    assert declined.returncode == 1 and f"Approve request {request_id} with plan hash {filed['plan_hash']}?" in declined.stdout
    assert cli.json("status", request_id)["decisions"] == []

    # 400: each field's message listed.
    invalid = cli.run("request", *request_flags(cli.world, "bad--identifier", engine="not-an-engine"))
    assert invalid.returncode == 3, invalid
    assert "endpoint_identifier: " in invalid.stderr and "engine: " in invalid.stderr

    # 401: a token the portal does not know.
    unknown = cli.run("status", request_id, DMS_ACCESS_TOKEN="0" * 64)
    assert unknown.returncode == 3 and "HTTP 401" in unknown.stderr

    # 404: no such request (or not one you may see).
    assert cli.run("status", "999999").returncode == 3
    rejected = cli.json("reject", request_id, "--reason", "not this quarter", as_user=APPROVER)
    assert rejected["state"] == "rejected"
    # Waiting for a request that can no longer become active: failed (1) at once.
    assert cli.run("wait", request_id).returncode == 1


def test_wait_times_out_with_4_and_the_request_as_it_is(cli):
    filed = cli.json("request", *request_flags(cli.world, "cli-timeout"))
    waited = cli.run("wait", str(filed["id"]), "--timeout", "1", "--interval", "0.2", "--json")
    assert waited.returncode == 4, waited
    assert json.loads(waited.stdout)["state"] == "pending_approval"
    assert "Timed out" in waited.stderr


def test_a_grant_that_fails_exits_1(cli, faults):
    filed = cli.json("request", *request_flags(cli.world, "cli-failing"))
    faults.set(filed["id"], create_endpoint={"permanent": "provisioner_access_denied"})
    # Confirmed on a terminal; with --json the plan and the question go to standard error.
    approved = cli.answering(
        "y", "approve", str(filed["id"]), "--wait", "--timeout", "120", "--interval", "0.5", "--json", as_user=APPROVER
    )
    assert approved.returncode == 1, (approved, cli.workers.logs())
    failed = json.loads(approved.stdout)
    assert failed["state"] == "failed"
    assert [s["status"] for s in failed["steps"] if s["name"] == "create_endpoint"] == ["failed"]


def test_a_file_of_many_files_each_once(cli, tmp_path):
    requests_file = tmp_path / "requests.yaml"
    requests_file.write_text(
        f"""
- datalake_account: {DATALAKE_ID}
  secret_arn: {cli.world.secret_arn}
  engine: mysql
  endpoint_identifier: cli-many-one
  justification: Lake ingestion of the first database.
- datalake_account: "{DATALAKE_ID}"
  secret_arn: {cli.world.secret_arn}
  engine: postgres
  endpoint_identifier: cli-many-two
  database_name: orders
  justification: Lake ingestion of the second database.
- datalake_account: "{DATALAKE_ID}"
  secret_arn: {cli.world.secret_arn}
  engine: postgres
  endpoint_identifier: cli-many-three-
  justification: A trailing hyphen is not a valid identifier.
"""
    )
    args = ("request", "--file", str(requests_file), "--idempotency-key", "pipeline-42")
    first = cli.json(*args, expect=3)
    assert [row.get("endpoint_identifier") for row in first[:2]] == ["cli-many-one", "cli-many-two"]
    assert first[2]["status"] == 400 and "endpoint_identifier" in first[2]["errors"]
    # Run again (a retried pipeline): the same keys give back the same requests, nothing new is filed.
    again = cli.json(*args, expect=3)
    assert [row.get("id") for row in again[:2]] == [row["id"] for row in first[:2]]
    assert len(cli.json("list", "--mine")) == 2


def test_login_keeps_the_token_0600_and_the_environment_wins(cli):
    login = cli.run("login", "--url", cli.url + "/", "--token", cli.tokens[REQUESTER], as_user=None)
    assert login.returncode == 0, login
    config_file = cli.config_home / "dms-access" / "config.json"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    assert json.loads(config_file.read_text()) == {"url": cli.url, "token": cli.tokens[REQUESTER]}

    filed = cli.json("request", *request_flags(cli.world, "cli-login"), as_user=None)  # from the file alone
    assert filed["requester"] == REQUESTER
    # Each variable wins over the file on its own.
    as_approver = cli.json("list", "--awaiting-my-approval", as_user=None, DMS_ACCESS_TOKEN=cli.tokens[APPROVER])
    assert [row["id"] for row in as_approver] == [filed["id"]]
    elsewhere = cli.run("list", as_user=None, DMS_ACCESS_URL="http://127.0.0.1:9")
    assert elsewhere.returncode == 1 and elsewhere.stderr.count("\n") == 1, elsewhere
    assert "Cannot reach the portal at http://127.0.0.1:9" in elsewhere.stderr

    # A token the portal refuses is not kept.
    refused = cli.run("login", "--url", cli.url, "--token", "0" * 64, as_user=None)
    assert refused.returncode == 3
    assert json.loads(config_file.read_text())["token"] == cli.tokens[REQUESTER]


def test_the_client_imports_no_django(cli):
    filed = cli.json("request", *request_flags(cli.world, "cli-nodjango"))
    probe = (
        "import sys\n"
        "from dms_access_cli.main import app\n"
        "try:\n"
        f"    app(['status', '{filed['id']}', '--json'], prog_name='dms-access')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "portal = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'portal', 'requests_app', 'provisioning', 'boto3'))\n"
        "print(repr(portal), file=sys.stderr)\n"
        "assert portal == [], portal\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=cli.env(REQUESTER), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == filed["id"]


def second_secret(world) -> str:
    """Another secret of the Remote account under the same key (created once per module's world)."""
    secrets = world.admin(REMOTE_ID, "secretsmanager")
    name = "prod/billing-db/credentials"
    try:
        return secrets.describe_secret(SecretId=name)["ARN"]
    except secrets.exceptions.ResourceNotFoundException:
        return secrets.create_secret(Name=name, KmsKeyId=world.key_arn, SecretString=json.dumps(SECRET_VALUE))["ARN"]


def statements_for(world, secret_arn: str, role_names: list[str]) -> list[dict]:
    """The secret policy's statements naming one of these roles (the module's other tests share the secret)."""
    text = world.admin(REMOTE_ID, "secretsmanager").get_resource_policy(SecretId=secret_arn).get("ResourcePolicy")
    statements = json.loads(text)["Statement"] if text else []
    return [s for s in statements if any(f":role/{name}" in json.dumps(s.get("Principal")) for name in role_names)]


def test_a_multi_grant_request_filed_from_a_file_approved_once_then_active_then_revoked(cli, tmp_path):
    billing = second_secret(cli.world)
    grants = [
        (cli.world.secret_arn, "postgres", "cli-set-orders", "orders"),
        (cli.world.secret_arn, "mysql", "cli-set-orders-audit", ""),  # DMS takes no database name for MySQL
        (billing, "postgres", "cli-set-billing", "billing"),
    ]
    items = "".join(
        f"  - secret_arn: {arn}\n    engine: {engine}\n    endpoint_identifier: {identifier}\n"
        + (f"    database_name: {database}\n" if database else "")
        for arn, engine, identifier, database in grants
    )
    set_file = tmp_path / "set.yaml"
    set_file.write_text(f"datalake_account: {DATALAKE_ID}\njustification: Three databases into the lake.\ngrants:\n{items}")

    # One broken grant files none; the API's error names it by its position.
    broken = tmp_path / "broken.yaml"
    broken.write_text(set_file.read_text() + "  - secret_arn: " + billing + "\n    engine: postgres\n    endpoint_identifier: cli-set-bad-\n")
    refused = cli.run("request", "--file", str(broken))
    assert refused.returncode == 3, refused
    assert "grants.3.endpoint_identifier: " in refused.stderr and "counting from 0" in refused.stderr
    assert "grants.0" not in refused.stderr and "grants.1" not in refused.stderr, refused.stderr
    assert not RequestSet.objects.exists() and not AccessRequest.objects.exists()

    waiting = cli.popen(
        "request", "--file", str(set_file), "--wait", "--timeout", "240", "--interval", "0.5", "--json", as_user=REQUESTER
    )
    try:
        deadline = time.monotonic() + 60
        while not RequestSet.objects.exists():
            assert waiting.poll() is None and time.monotonic() < deadline, waiting.communicate()
            time.sleep(0.1)
        (listed,) = cli.json("set", "list", as_user=APPROVER)
        set_id = str(listed["id"])
        plan = cli.json("set", "plan", set_id, as_user=APPROVER)
        assert len(plan["awaiting"]) == 3 and plan["plan_hash"]
        by_secret = {policy["arn"]: policy["statements"] for policy in plan["secrets"]}
        assert {arn: len(statements) for arn, statements in by_secret.items()} == {cli.world.secret_arn: 2, billing: 1}
        assert [len(policy["statements"]) for policy in plan["keys"]] == [3]  # both secrets share the key

        # A plan hash other than the current one decides nothing: 3, with the API's words and the current hash.
        stale = cli.run("set", "approve", set_id, "--yes", "--plan-hash", "0" * 64, as_user=APPROVER)
        assert stale.returncode == 3, stale
        assert "HTTP 409, plan_changed" in stale.stderr and f"current plan hash: {plan['plan_hash']}" in stale.stderr
        # The requester may not approve their own request.
        assert cli.run("set", "approve", set_id, "--yes").returncode == 3

        approve = cli.run("set", "approve", set_id, "--yes", "--comment", "fine", as_user=APPROVER)
        assert approve.returncode == 0, approve.stderr
        assert plan["plan_hash"] in approve.stdout and billing in approve.stdout  # shown before it was sent

        stdout, stderr = waiting.communicate(timeout=240)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, (stdout, stderr, cli.workers.logs())
    active = json.loads(stdout)
    assert str(active["id"]) == set_id and active["states"] == {"active": 3}
    ids = [grant["id"] for grant in active["grants"]]
    for grant_id in ids:
        assert f"request {grant_id}: active" in stderr  # each grant followed, as lines without a terminal
    for grant_id in ids:
        (decision,) = cli.json("status", str(grant_id))["decisions"]
        assert decision["approver"] == APPROVER
    roles = [grant["role_name"] for grant in active["grants"]]
    assert len(statements_for(cli.world, cli.world.secret_arn, roles)) == 2
    assert len(statements_for(cli.world, billing, roles)) == 1

    status = cli.run("set", "status", set_id)
    assert status.returncode == 0 and "3 active" in status.stdout and "cli-set-billing" in status.stdout
    assert cli.run("set", "wait", set_id, "--timeout", "5").returncode == 0

    revoked = cli.json("set", "revoke", set_id, "--yes", "--wait", "--timeout", "180", "--interval", "0.5")
    assert revoked["states"] == {"revoked": 3}
    assert statements_for(cli.world, cli.world.secret_arn, roles) == statements_for(cli.world, billing, roles) == []
    assert all(cli.world.endpoints(identifier) == [] for _, _, identifier, _ in grants)
