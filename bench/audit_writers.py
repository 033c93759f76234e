"""A writer process of the audit benchmark (forked from the bench's process).

It waits for the other writers, then appends events one transaction each:
through ``record_event`` (``chained``), or as a bare INSERT of the same row
into a scratch copy of the table (``bare``).
"""
from __future__ import annotations

import hashlib
import json
import time

from django.db import connection, transaction
from django.utils import timezone

from provisioning.steps import table
from requests_app.audit import record_event

# The scratch copy of the audit table the bare writers insert into.
SCRATCH_TABLE = "bench_audit_plain"


def append_events(kind: str, count: int, writer: int, barrier, results) -> None:
    """Append ``count`` events; put (start, end, per-event seconds) on ``results``."""
    try:
        append = _chained if kind == "chained" else _bare
        append(writer, -1)  # connection opened, statements prepared: not timed
        barrier.wait()
        started = time.time()
        latencies = []
        for number in range(count):
            began = time.perf_counter()
            append(writer, number)
            latencies.append(time.perf_counter() - began)
        results.put((started, time.time(), latencies))
    except BaseException as error:
        barrier.abort()
        results.put(f"{type(error).__name__}: {error}")
        raise
    finally:
        connection.close()


def _details(writer: int, number: int) -> dict:
    return {"writer": writer, "number": number, "phase": "grant", "step": table.GRANT_KEY_POLICY,
            "aws_request_ids": [f"bench-{writer}-{number}"]}


def _chained(writer: int, number: int) -> None:
    with transaction.atomic():
        record_event(action="bench.append", actor_label="bench", target_arn="arn:aws:kms:eu-west-1:222222222222:key/bench",
                     details=_details(writer, number))


def _bare(writer: int, number: int) -> None:
    digest = hashlib.sha256(f"{writer}-{number}-{time.time_ns()}".encode()).hexdigest()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SCRATCH_TABLE} (created_at, actor_label, action, target_arn, details, prev_hash, hash, key_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [timezone.now(), "bench", "bench.append", "arn:aws:kms:eu-west-1:222222222222:key/bench",
             json.dumps(_details(writer, number)), "0" * 64, digest, "bench"],
        )
