"""Audit trail: the cost of appending an event under concurrent writers, and
the time to verify the whole chain.

Appending: ``audit_writers`` processes append at once, through
``record_event`` (advisory lock, last hash, hashing, insert), against the
same processes inserting the same rows into a scratch copy of the table
(same columns and indexes, no chain). Verifying: ``verify_chain`` over every
event stored (the loaded trail plus everything the other benchmarks
recorded), against reading the same rows with nothing computed.
"""
from __future__ import annotations

import statistics
import time

from django.db import connection

from bench.audit_writers import SCRATCH_TABLE, append_events
from bench.context import Bench
from bench.workers import forked_context
from requests_app.audit import verify_chain
from requests_app.models import AuditEvent


def _append_run(bench: Bench, kind: str) -> tuple[float, list[float]]:
    """(wall seconds for every writer's events, each append's seconds)."""
    size = bench.size
    context = forked_context()
    barrier = context.Barrier(size.audit_writers)
    results = context.Queue()
    writers = [
        context.Process(target=append_events,
                        args=(kind, size.audit_events_per_writer, writer, barrier, results))
        for writer in range(size.audit_writers)
    ]
    for writer in writers:
        writer.start()
    spans = [results.get(timeout=600) for _ in writers]
    for writer in writers:
        writer.join()
    if any(isinstance(span, str) for span in spans) or any(writer.exitcode for writer in writers):
        raise RuntimeError(f"an audit writer failed: {[s for s in spans if isinstance(s, str)]}")
    wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return wall, [latency for _, _, latencies in spans for latency in latencies]


def _append(bench: Bench) -> dict:
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
        cursor.execute(f"CREATE TABLE {SCRATCH_TABLE} (LIKE {table} INCLUDING ALL)")
    try:
        chained_wall, chained = _append_run(bench, "chained")
        bare_wall, bare = _append_run(bench, "bare")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
    events = bench.size.audit_writers * bench.size.audit_events_per_writer
    return {
        "audit_append_writers": bench.size.audit_writers,
        "audit_append_events": events,
        "audit_append_ms_per_event": chained_wall / events * 1000,
        "audit_append_bare_ms_per_event": bare_wall / events * 1000,
        "audit_append_ratio": chained_wall / bare_wall,
        "audit_append_p50_ms": statistics.median(chained) * 1000,
        "audit_append_bare_p50_ms": statistics.median(bare) * 1000,
    }


def _bare_scan() -> tuple[float, int]:
    """Read every event's columns in id order (server-side cursor, no model instances)."""
    columns = [field.attname for field in AuditEvent._meta.concrete_fields]
    started = time.perf_counter()
    rows = sum(1 for _ in AuditEvent.objects.order_by("id").values_list(*columns).iterator(chunk_size=5000))
    return time.perf_counter() - started, rows


def _verify() -> dict:
    started = time.perf_counter()
    report = verify_chain()
    seconds = time.perf_counter() - started
    scan_seconds, rows = _bare_scan()
    return {
        "audit_verify_ok": report.ok,
        "audit_verify_events": report.checked,
        "audit_verify_seconds": seconds,
        "audit_verify_events_per_second": report.checked / seconds,
        "audit_verify_bare_scan_seconds": scan_seconds,
        "audit_verify_ratio": seconds / scan_seconds,
        "audit_verify_first_broken_id": report.first_broken_id,
        "audit_rows": rows,
    }


def run(bench: Bench) -> dict:
    return {**_append(bench), **_verify()}
