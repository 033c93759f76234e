"""The broker and the database going away under a running portal.

Redis: this module runs its own redis-server, with its own workers and beat,
so it can stop it. Requests are approved in a web process of their own
(``manage.py shell``) on that broker; the broker is stopped while their
grants run, more requests are approved while it is down, and it comes back
empty, as a restarted Redis without persistence does. Nothing may be lost.

Postgres: while a worker sits between a step's AWS change and the recording
of its result, every database connection of the workers is terminated. The
step must run again and write nothing the second time.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest
import redis
from django.db import connection

from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, AuditEvent
from tests.live_system import WORKER_SETTINGS, free_port
from tests.integration.outcomes import request_for, sids, steps, wait_until_settled
from tests.integration.processes import ROOT, running_pool
from tests.integration.world import FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, ROOT_KEY_STATEMENT

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server to stop and start a broker"),
]


class RedisServer:
    """A redis-server of this module's own, without persistence, that a test may stop and start."""

    def __init__(self, log_dir):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_dir = log_dir
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=open(self.log_dir / "redis.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def outage_env(portal_env, broker):
    return {**portal_env, **WORKER_SETTINGS, "CELERY_BROKER_URL": broker.url}


@pytest.fixture(scope="module")
def outage_workers(outage_env, tmp_path_factory):
    """Two workers and beat on this module's broker, with the harness's short lease and stall times."""
    with running_pool(outage_env, tmp_path_factory.mktemp("celery-logs")) as pool:
        yield pool


def approve_in_web_process(requests, env) -> subprocess.CompletedProcess:
    """Approve ``requests`` in a web process of their own, on the broker ``env`` names."""
    ids = [request.pk for request in requests]
    code = (
        "from requests_app.models import AccessRequest; from tests.requests_app.rows import approve; "
        f"[approve(request) for request in AccessRequest.objects.filter(pk__in={ids!r}).order_by('pk')]"
    )
    web = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert web.returncode == 0, web.stderr
    return web


def assert_granted_once_each(moto_world, requests) -> None:
    secret_sids, key_sids = sids(moto_world.secret_policy()), sids(moto_world.key_policy())
    for request in requests:
        sid = grant_spec_for(request).statement_sid
        assert secret_sids.count(sid) == 1 and key_sids.count(sid) == 1
        assert len(moto_world.endpoints(request.endpoint_identifier)) == 1
    assert FOREIGN_SECRET_STATEMENT in moto_world.secret_policy()["Statement"]
    key_statements = moto_world.key_policy()["Statement"]
    assert key_statements[0] == ROOT_KEY_STATEMENT and FOREIGN_KEY_STATEMENT in key_statements


def wait_for_some_progress(request_ids, timeout: float = 60) -> None:
    """Until the workers have changed AWS for at least one of these requests."""
    deadline = time.monotonic() + timeout
    while not AuditEvent.objects.filter(request_id__in=request_ids, action__startswith="aws.").exists():
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.05)


def test_requests_approved_before_and_while_redis_is_down_all_end_active(
    moto_world, broker, outage_env, outage_workers, figures
):
    before = [request_for(moto_world, f"outage-before-{n}") for n in range(4)]
    during = [request_for(moto_world, f"outage-during-{n}") for n in range(4)]
    everything = [request.pk for request in before + during]

    approve_in_web_process(before, outage_env)
    wait_for_some_progress([request.pk for request in before])
    broker.stop()
    stopped = time.monotonic()
    in_flight = AccessRequest.objects.filter(pk__in=everything, state__in=["approved", "provisioning"]).count()
    web = approve_in_web_process(during, outage_env)
    time.sleep(2)  # the workers notice the broker is gone and keep trying
    broker.start()
    outage = time.monotonic() - stopped

    settled = wait_until_settled(everything, outage_workers, timeout=120)
    recovered = time.monotonic() - stopped - outage
    logs = outage_workers.logs(tail=None)

    figures.record(
        requests_approved_before_the_outage=len(before),
        of_them_in_flight_when_redis_stopped=in_flight,
        requests_approved_while_redis_was_down=len(during),
        enqueue_failures_logged_by_the_web_process=web.stderr.count("could not enqueue"),
        requests_the_sweep_found_lost=len(set(re.findall(r"request (\d+): grant work was lost", logs))),
        seconds_redis_was_down=round(outage, 1),
        seconds_from_restart_to_all_active=round(recovered, 1),
        active=sum(row.state == "active" for row in settled.values()),
        lost=sum(row.state != "active" for row in settled.values()),
    )
    # The approvals stood although nothing could be enqueued...
    for request in during:
        assert f"could not enqueue grant work for request {request.pk}" in web.stderr
    # ...and once Redis was back, empty, the sweep got every grant done.
    assert {pk: row.state for pk, row in settled.items()} == {pk: "active" for pk in everything}
    # The sweep marks what it re-sent once the broker took it (its log line may
    # come from any worker's sweep, or from a task beat sent).
    resent = dict(AccessRequest.objects.filter(pk__in=[r.pk for r in during]).values_list("pk", "lost_work_sent_at"))
    assert {pk: at is not None for pk, at in resent.items()} == {r.pk: True for r in during}
    assert_granted_once_each(moto_world, before + during)
    assert verify_chain().ok


def terminate_other_database_connections() -> int:
    """Cut every connection to the test database but this process's own, as a failover would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_database_connection_dropped_mid_step_reruns_the_step_without_repeating_it(
    moto_world, outage_env, outage_workers, faults, figures
):
    request = request_for(moto_world, "connection-dropped")
    faults.set(request.pk, grant_key_policy={"sleep_after": 3})
    approve_in_web_process([request], outage_env)
    faults.wait_for_sleeping(request.pk, "grant_key_policy")

    terminated = terminate_other_database_connections()
    request = wait_until_settled([request.pk], outage_workers)[request.pk]

    step = steps(request)["grant_key_policy"]
    key_events = list(
        AuditEvent.objects.filter(request=request, details__step="grant_key_policy").values_list("action", flat=True)
    )
    figures.record(
        database_connections_terminated=terminated,
        outcome=request.state,
        attempts_of_the_interrupted_step=step.attempts,
        audit_events_of_the_step=key_events,
    )
    assert request.state == "active", (request.diagnosis, step.error)
    # Run again, once, after the first attempt's lease lapsed: the re-run found
    # the statement the first run had put and wrote nothing.
    assert step.attempts == 2
    assert key_events == ["step.lease_lapsed", "step.grant_key_policy.unchanged"]
    assert_granted_once_each(moto_world, [request])
    assert verify_chain().ok
