"""Real Celery workers on the real broker, started and stopped by the benchmarks."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from requests_app.management.process_group import Child

ROOT = Path(__file__).resolve().parent.parent


def worker_environment(*, database_url: str, broker_url: str, endpoint_url: str) -> dict[str, str]:
    """The environment of a worker (and of any benchmark child process)."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        AWS_ENDPOINT_URL=endpoint_url,
        # The log of every step would cost the workers more than the steps.
        LOG_LEVEL="WARNING",
    )
    return env


class Workers:
    """One Celery worker with ``processes`` pool processes (prefork), as deployed."""

    def __init__(self, processes: int, *, database_url: str, broker_url: str, endpoint_url: str):
        self.processes = processes
        self.name = f"bench-{uuid.uuid4().hex[:8]}@localhost"
        self.env = worker_environment(database_url=database_url, broker_url=broker_url, endpoint_url=endpoint_url)
        self._child: Child | None = None
        self._log = tempfile.TemporaryFile(mode="w+")

    def start(self) -> "Workers":
        from portal.celery import app

        # Work queued by an earlier, interrupted run would run against rows
        # that no longer exist; the benchmark's queue starts empty.
        app.control.purge()
        argv = [
            sys.executable, "-m", "celery", "--quiet", "-A", "portal", "worker",
            "--pool", "prefork", "--concurrency", str(self.processes), "--hostname", self.name,
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
        ]
        process = subprocess.Popen(
            argv, env=self.env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True
        )
        self._child = Child(name="worker", process=process, stop_timeout=30)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self._child.has_exited():
                self._stop()
                raise RuntimeError(f"the Celery worker exited while starting:\n{self.log()}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return self
        self._stop()
        raise RuntimeError(f"the Celery worker did not answer within 90 s:\n{self.log()}")

    def stop(self) -> None:
        self._stop()
        self._log.close()

    def _stop(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None

    def log(self) -> str:
        """What the worker wrote to its standard error so far."""
        self._log.seek(0)
        return self._log.read()


def forked_context():
    """multiprocessing by fork, once this process's database connections are
    closed: a child starts at once with Django and boto3 imported, and opens
    connections (and builds boto3 sessions) of its own."""
    import multiprocessing

    from django.db import connections

    connections.close_all()
    return multiprocessing.get_context("fork")
