"""The README's one command: ``manage.py quickstart`` runs the whole portal on
its embedded defaults, a person takes the runbook's request from filing to
active over HTTP, and Ctrl-C leaves no process behind.

Everything runs in the quickstart's own processes, on its own SQLite file,
filesystem broker and moto server under a temporary var directory; this test
only talks HTTP to it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
# Generous: the first start migrates a new database and hashes three passwords.
START_TIMEOUT = 180
GRANT_TIMEOUT = 180
STOP_TIMEOUT = 90
# Variables that would point the quickstart away from its embedded defaults.
OUTSIDE_SETTINGS = (
    "DATABASE_URL", "CELERY_BROKER_URL", "AWS_ENDPOINT_URL", "PROMETHEUS_MULTIPROC_DIR",
    "CELERY_TASK_ALWAYS_EAGER", "AWS_PROFILE", "SECRET_KEY", "NOTIFY_WEBHOOK_URL", "AUDIT_CHAIN_KEYS",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[1], []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def wait_for(condition, *, timeout: float, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if process.poll() is not None:
            pytest.fail(f"quickstart exited ({process.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def assert_short_and_human(output: str) -> None:
    """What the terminal shows: fits on one screen, no log lines, nothing alarming."""
    lines = output.splitlines()
    assert len(lines) <= 40, output
    assert not [line for line in lines if line.lstrip().startswith(("{", "[", "-"))], output
    for noise in ("Warning", "WARNING", "development server", "No directory at", "celery@", "superuser privileges"):
        assert noise not in output, (noise, output)
    assert all(len(line) <= 160 for line in lines), output


def printed_logins(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(requester|approver|admin)\s+(\S+)\s", output, re.MULTILINE))


def log_in(base_url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base_url}/auth/login/", timeout=30).raise_for_status()
    response = session.post(
        f"{base_url}/auth/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base_url}/auth/login/"},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, response.text[:2000]
    assert "sessionid" in session.cookies
    # Unsafe API calls under session authentication carry the CSRF token.
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    session.headers["Referer"] = f"{base_url}/"
    return session


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_quickstart_carries_the_runbooks_request_to_active_and_stops_everything_on_ctrl_c(tmp_path):
    var_dir = tmp_path / "var"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items() if name not in OUTSIDE_SETTINGS}
    env["PORTAL_VAR_DIR"] = str(var_dir)
    log = tmp_path / "quickstart.log"
    with open(log, "wb") as output:
        quickstart = subprocess.Popen(
            [sys.executable, "manage.py", "quickstart", "--port", str(port)],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    seen: set[int] = set()
    try:
        wait_for(lambda: "Press Ctrl-C" in log.read_text(), timeout=START_TIMEOUT, what="the banner", process=quickstart, log=log)
        seen |= descendants(quickstart.pid)
        assert requests.get(f"{base_url}/healthz", timeout=10).json() == {"status": "ok"}
        ready = requests.get(f"{base_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text

        output = log.read_text()
        assert_short_and_human(output)
        logins = printed_logins(output)
        assert set(logins) == {"requester", "approver", "admin"}
        world = json.loads((var_dir / "demo-world.json").read_text())
        assert world["secret_arn"] in output

        requester = log_in(base_url, "requester", logins["requester"])
        filed = requester.post(
            f"{base_url}/api/v1/requests/",
            json={
                "datalake_account": "111111111111",
                "secret_arn": world["secret_arn"],
                "kms_key_arn": world["key_arn"],
                "engine": "mysql",
                "endpoint_identifier": "source-db-mysql",
                "role_name": "dms-cross-account-secret-access",
                "replication_instance_arn": world["replication_instance_arn"],
                "justification": "Replicate the source database into the data lake.",
            },
            timeout=60,
        )
        assert filed.status_code == 201, filed.text
        request_id = filed.json()["id"]
        assert filed.json()["state"] == "pending_approval"

        approver = log_in(base_url, "approver", logins["approver"])
        seen_plan = approver.get(f"{base_url}/api/v1/requests/{request_id}/plan/", timeout=30).json()["plan_hash"]
        approved = approver.post(
            f"{base_url}/api/v1/requests/{request_id}/approve/",
            json={"comment": "As in the runbook.", "plan_hash": seen_plan},
            timeout=60,
        )
        assert approved.status_code == 200, approved.text
        seen |= descendants(quickstart.pid)

        def settled():
            detail = requester.get(f"{base_url}/api/v1/requests/{request_id}/", timeout=30).json()
            return detail if detail["state"] in ("active", "failed") else None

        detail = wait_for(settled, timeout=GRANT_TIMEOUT, what="the grant", process=quickstart, log=log)
        assert detail["state"] == "active", json.dumps(detail, indent=2)
        assert detail["role_arn"] == "arn:aws:iam::111111111111:role/dms-cross-account-secret-access"
        assert detail["endpoint_arn"].startswith("arn:aws:dms:eu-west-1:111111111111:endpoint:")
        assert [step["status"] for step in detail["steps"]] == ["succeeded"] * len(detail["steps"])

        # The console told the story, one line per event, each with the request's page.
        page = f"{base_url}/requests/{request_id}/"
        events = wait_for(
            lambda: (lines := [line for line in log.read_text().splitlines() if page in line])
            and "active" in lines[-1] and lines,
            timeout=30, what="the console's events", process=quickstart, log=log,
        )  # fmt: skip
        said = [line.split(f"request #{request_id} ", 1)[1].split("   ")[0] for line in events]
        assert said[0] == "filed by requester (mysql source-db-mysql, preflight passed)"
        assert "approved by approver" in said
        steps_said = [s for s in said if s.startswith("step ")]
        # The two policy steps run side by side: either may be recorded first.
        assert steps_said[:2] + sorted(steps_said[2:4]) + steps_said[4:] == [
            f"step {name} done"
            for name in ("preflight", "create_role", "grant_key_policy", "grant_secret_policy", "create_endpoint", "verify")
        ]
        assert said[-1] == "active"
        assert_short_and_human(log.read_text().split("Press Ctrl-C", 1)[1])
        # Each process's JSON log lines are in var/log/, with the step context.
        logs = {name: (var_dir / "log" / f"{name}.log").read_text() for name in ("quickstart", "web", "worker", "beat")}
        json_lines = {name: [json.loads(line) for line in text.splitlines() if line.startswith("{")]
                      for name, text in logs.items()}  # fmt: skip
        assert all(json_lines.values()), {name: text[:500] for name, text in logs.items()}
        assert any(line.get("request_id") == request_id and line.get("step") for line in json_lines["worker"])
        assert any(line["logger"] == "celery.beat" for line in json_lines["beat"])

        # The audit chain's key, generated at the first start, kept beside SECRET_KEY.
        assert (var_dir / "audit_chain_keys").stat().st_mode & 0o777 == 0o600
        metrics = samples(requests.get(f"{base_url}/metrics", timeout=30).text)
        assert metrics[("portal_requests", (("state", "active"),))] == 1
        seen |= descendants(quickstart.pid)
        # The web server, the worker with its pool, and beat.
        assert len(seen) >= 4
    finally:
        seen |= descendants(quickstart.pid)
        quickstart.send_signal(signal.SIGINT)
        try:
            code = quickstart.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(quickstart.pid, signal.SIGKILL)
            for pid in seen:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise

    assert code == 0, log.read_text()[-4000:]
    assert [pid for pid in seen if alive(pid)] == []
    assert "Stopped (" in log.read_text()


def test_quickstart_refuses_a_port_that_is_already_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"127.0.0.1:{port} is in use"):
            call_command("quickstart", "--port", str(port))
