"""A writer process of the audit benchmark.

It starts a Django of its own on the bench's database (a spawned child
shares nothing with its parent), waits for the other writers, and appends
events one transaction each: through ``record_event`` (``chained``), or as
a bare INSERT of the same row into a scratch copy of the table (``bare``).
"""
from __future__ import annotations

import os
import time

# The scratch copy of the audit table the bare writers insert into.
SCRATCH_TABLE = "bench_audit_plain"


def append_events(database_url: str, kind: str, count: int, writer: int, barrier, results) -> None:
    """Append ``count`` events; put (start, end, per-event seconds) on ``results``."""
    try:
        os.environ["DATABASE_URL"] = database_url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
        import django

        django.setup()
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


def _details(writer: int, number: int) -> dict:
    return {"writer": writer, "number": number, "phase": "grant", "step": "grant_key_policy",
            "aws_request_ids": [f"bench-{writer}-{number}"]}


def _chained(writer: int, number: int) -> None:
    from django.db import transaction

    from requests_app.audit import record_event

    with transaction.atomic():
        record_event(action="bench.append", actor_label="bench", target_arn="arn:aws:kms:eu-west-1:222222222222:key/bench",
                     details=_details(writer, number))


def _bare(writer: int, number: int) -> None:
    import hashlib
    import json

    from django.db import connection, transaction
    from django.utils import timezone

    digest = hashlib.sha256(f"{writer}-{number}-{time.time_ns()}".encode()).hexdigest()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SCRATCH_TABLE} (created_at, actor_label, action, target_arn, details, prev_hash, hash) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [timezone.now(), "bench", "bench.append", "arn:aws:kms:eu-west-1:222222222222:key/bench",
             json.dumps(_details(writer, number)), "0" * 64, digest],
        )
