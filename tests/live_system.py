"""The live system for tests that span processes: a moto server playing AWS,
real Celery workers and beat on Redis, all sharing pytest-django's test
database. Shared by tests/integration (workflow), tests/reliability and
tests/e2e (browser).

Tests using it are ``django_db(transaction=True)`` so that what they write is
committed and visible to the workers, and what the workers write is visible
to them. The fixtures live here, registered once from tests/conftest.py, so
the session's one moto server is seeded once whichever directory asks first.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection
from moto.server import ThreadedMotoServer

from provisioning.clients import ClientFactory
from requests_app.aws import set_client_factory
from tests.integration.processes import running_pool
from tests.integration.world import seed_world

# Shrunken for tests; production defaults live in portal/settings.py.
WORKER_SETTINGS = {
    "PROVISIONING_RETRY_BACKOFF": "1",
    "PROVISIONING_RETRY_BACKOFF_MAX": "1",
    "PROVISIONING_RETRY_MAX_RETRIES": "3",
    "PROVISIONING_STEP_LEASE_SECONDS": "5",
    "PROVISIONING_STALL_SECONDS": "3",
    "PROVISIONING_SWEEP_INTERVAL_SECONDS": "1",
}


@pytest.fixture(scope="module")
def moto_server():
    # One log line per AWS call drowns the output of a failing test.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def moto_world(moto_server):
    """The runbook's world, seeded once per module; this process's portal code talks to it too."""
    # moto keeps its state per process, not per server: start from nothing
    # whatever an earlier module (or an in-process mock) left behind.
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    set_client_factory(ClientFactory(endpoint_url=moto_server))
    yield seed_world(moto_server)
    set_client_factory(None)


@pytest.fixture(scope="session")
def broker_url():
    url = settings.CELERY_BROKER_URL
    redis.Redis.from_url(url).flushdb()
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgresql://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def portal_env(django_db_setup, django_db_blocker, moto_server, broker_url, tmp_path_factory):
    """Environment of every portal process the tests start (workers, beat, a web process)."""
    with django_db_blocker.unblock():
        database_url = test_database_url()
    faults_dir = tmp_path_factory.mktemp("faults")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "PORTAL_TEST_FAULTS_DIR": str(faults_dir),
        "CELERY_SKIP_CHECKS": "1",
        **WORKER_SETTINGS,
    }
    env.pop("AWS_PROFILE", None)
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    return env


@pytest.fixture(scope="module")
def workers(portal_env, tmp_path_factory):
    """Two worker processes (prefork, concurrency 2) and beat running the sweep every second."""
    with running_pool(portal_env, tmp_path_factory.mktemp("celery-logs")) as pool:
        yield pool


@pytest.fixture
def faults(portal_env):
    """Write the faults the workers inject for one request (see fault_hooks)."""
    directory = Path(portal_env["PORTAL_TEST_FAULTS_DIR"])

    class Faults:
        dir = directory

        def set(self, request_id: int, **by_step: dict) -> None:
            (directory / f"{request_id}.json").write_text(json.dumps(by_step))

        def wait_for_sleeping(self, request_id: int, step: str, timeout: float = 30) -> None:
            marker = directory / f"{request_id}.{step}.sleeping"
            deadline = time.monotonic() + timeout
            while not marker.exists():
                if time.monotonic() > deadline:
                    raise AssertionError(f"step {step} of request {request_id} never reached its sleep")
                time.sleep(0.05)

        def sleeper(self, request_id: int, step: str) -> dict:
            """The pool process sleeping in ``step`` ({"pid", "ppid": its worker's pid})."""
            marker = directory / f"{request_id}.{step}.sleeping"
            deadline = time.monotonic() + 5
            while True:
                try:
                    return json.loads(marker.read_text())
                except (FileNotFoundError, json.JSONDecodeError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    return Faults()


class AwsFaults:
    """What the workers' botocore hooks (tests/integration/aws_faults.py) inject and saw."""

    def __init__(self, directory: Path):
        self.dir = directory

    def configure(self, **profile) -> None:
        """Set the fault profile the workers read before each AWS call."""
        staged = self.dir / "aws.json.new"
        staged.write_text(json.dumps(profile))
        staged.replace(self.dir / "aws.json")  # workers never read half a file

    def attempts(self, request_ids=None) -> list[dict]:
        """Every HTTP attempt logged (for ``request_ids`` only, when given), oldest first."""
        wanted = None if request_ids is None else {str(pk) for pk in request_ids}
        entries = []
        for path in self.dir.glob("aws-calls-*.jsonl"):
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a worker killed mid-write leaves half a line at most
                if wanted is None or entry["request"] in wanted:
                    entries.append(entry)
        return sorted(entries, key=lambda entry: entry["at"])

    def reset(self) -> None:
        """No faults, and forget the attempts logged so far."""
        self.configure()
        for path in self.dir.glob("aws-calls-*.jsonl"):
            path.unlink()


@pytest.fixture
def aws_faults(portal_env):
    """Configure the AWS faults the workers inject; read back every attempt they logged."""
    faults = AwsFaults(Path(portal_env["PORTAL_TEST_FAULTS_DIR"]))
    faults.reset()
    yield faults
    faults.configure()
