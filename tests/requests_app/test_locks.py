"""Two grants merging into one policy at the same moment: with the ARN lock
both statements survive; without it, the interleaving loses one."""
from __future__ import annotations

import contextlib
import threading
import time

import pytest
from django.db import connection, connections

from requests_app.workflow.locks import arn_lock

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need Postgres (SQLite serialises writers)"),
]
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"


class PolicyStore:
    """The secret's policy as AWS holds it: read and put, nothing atomic."""

    def __init__(self):
        self.statements = ["ForeignStatement"]

    def read(self):
        return list(self.statements)

    def put(self, statements):
        self.statements = statements


def grant(store, sid, lock, *, after_read=lambda: None):
    try:
        with lock(SECRET_ARN):
            policy = store.read()
            after_read()
            store.put([*policy, sid])
    finally:
        connections.close_all()


def run_in_threads(*targets):
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads)


def someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        # Activity is snapshotted once per transaction unless cleared.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_without_a_lock_the_second_put_drops_the_first_grant():
    store = PolicyStore()
    b_done = threading.Event()

    def a():
        grant(store, "GrantA", lambda arn: contextlib.nullcontext(), after_read=lambda: b_done.wait(10))

    def b():
        grant(store, "GrantB", lambda arn: contextlib.nullcontext())
        b_done.set()

    run_in_threads(a, b)

    assert store.statements == ["ForeignStatement", "GrantA"]  # GrantB lost


def test_with_the_arn_lock_both_grants_and_the_foreign_statement_survive():
    store = PolicyStore()
    a_has_read = threading.Event()

    def a():
        # Hold the lock until B is seen blocked on it, then write.
        grant(store, "GrantA", arn_lock, after_read=lambda: (a_has_read.set(), wait_until(someone_waits_for_a_lock)))

    def b():
        a_has_read.wait(10)
        grant(store, "GrantB", arn_lock)

    run_in_threads(a, b)

    assert store.statements == ["ForeignStatement", "GrantA", "GrantB"]


def test_the_lock_is_released_when_the_block_fails():
    with pytest.raises(RuntimeError):
        with arn_lock(SECRET_ARN):
            raise RuntimeError("put failed")

    acquired = threading.Event()

    def other_worker():
        grant(PolicyStore(), "GrantB", arn_lock, after_read=acquired.set)

    run_in_threads(other_worker)
    assert acquired.is_set()
