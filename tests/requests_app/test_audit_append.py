"""Appending to the audit chain: what is hashed before the lock is what is
verified, and writers appending at once never fork the chain."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from requests_app.audit import GENESIS_HASH, canonical_event, record_event, verify_chain
from requests_app.models import AuditEvent

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need Postgres")

WRITERS = 6
EVENTS_EACH = 8


class RolledBack(Exception):
    pass


def _writer(number: int, start: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        start.wait()
        for index in range(EVENTS_EACH):
            if index % 4 == 3:
                # A bigger transaction that records, works on, then gives up:
                # its event must leave no gap in the chain.
                try:
                    with transaction.atomic():
                        record_event(action="bench.rolled_back", actor_label=f"writer-{number}", details={"i": index})
                        time.sleep(0.005)
                        raise RolledBack
                except RolledBack:
                    pass
                continue
            with transaction.atomic():
                record_event(action="test.append", actor_label=f"writer-{number}",
                             details={"i": index, "created_at": "", "nested": {"created_at": '"created_at":""'}})
                if index % 4 == 1:
                    time.sleep(0.005)  # other work after the event, still under the lock
    except BaseException as error:  # reported to the test's thread
        errors.append(error)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_writers_appending_at_once_keep_one_linear_chain():
    start, errors = threading.Barrier(WRITERS), []
    threads = [threading.Thread(target=_writer, args=(n, start, errors)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    committed = WRITERS * (EVENTS_EACH - EVENTS_EACH // 4)
    rows = list(AuditEvent.objects.order_by("id").values_list("prev_hash", "hash", "action", "created_at"))
    assert len(rows) == committed
    assert {action for *_, action, _ in rows} == {"test.append"}
    # One chain: each event follows the one before it in id order, none shares a predecessor.
    assert [prev for prev, *_ in rows] == [GENESIS_HASH] + [hash_ for _, hash_, *_ in rows[:-1]]
    # Times are stamped under the lock, so they follow the chain.
    assert [created for *_, created in rows] == sorted(created for *_, created in rows)
    report = verify_chain()
    assert (report.ok, report.checked) == (True, committed)


@pytest.mark.django_db
def test_the_event_hashed_before_its_time_is_the_canonical_event():
    # Details that spell the time's member inside them: the text is split at the top-level one.
    with transaction.atomic():
        event = record_event(action="test.append", actor_label='"created_at":""',
                             details={"created_at": "", "z": ['"created_at":""'], "a": {"created_at": None}})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.hash, stored.prev_hash, stored.created_at) == (event.hash, event.prev_hash, event.created_at)
    assert '"created_at":"' + stored.created_at.isoformat(timespec="microseconds") in canonical_event(stored)
    assert verify_chain().ok
