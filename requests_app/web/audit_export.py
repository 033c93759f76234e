"""Streaming exports of the audit log (CSV and JSON Lines).

Rows are read in chunks and written as they come, so an export of the whole
trail neither holds it in memory nor times out before the first byte.
"""
from __future__ import annotations

import csv
import json

from django.http import StreamingHttpResponse
from django.utils import timezone

from requests_app import visibility

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}
COLUMNS = (
    "id",
    "created_at",
    "actor_label",
    "source_ip",
    "action",
    "request_id",
    "account",
    "target_arn",
    "details",
    "prev_hash",
    "hash",
    "key_id",
)
CHUNK_SIZE = 2000


def _record(event, details: dict) -> dict:
    return {
        "id": event.id,
        "created_at": event.created_at.isoformat(),
        "actor_label": event.actor_label,
        "source_ip": event.source_ip,
        "action": event.action,
        "request_id": event.request_id,
        "account": event.account.account_id if event.account_id else None,
        "target_arn": event.target_arn,
        "details": details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "key_id": event.key_id,
    }


class _Echo:
    """A file-like object whose write() hands the line back to the csv writer's caller."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(events, details_of):
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for event in events:
        record = _record(event, details_of(event))
        record["details"] = json.dumps(record["details"], sort_keys=True)
        yield writer.writerow([_neutralise("" if record[c] is None else record[c]) for c in COLUMNS])


def _neutralise(value):
    # Spreadsheets run cells starting with these as formulas; the audit trail
    # holds user-written text (comments, justifications), so quote them.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _jsonl_lines(events, details_of):
    for event in events:
        yield json.dumps(_record(event, details_of(event)), sort_keys=True) + "\n"


def streaming_export(events, fmt: str, *, user) -> StreamingHttpResponse:
    """Stream ``events`` (a queryset, already scoped and filtered) as ``fmt``, their
    details as ``user`` may see them."""
    accounts = visibility.document_accounts_of(user)

    def details_of(event):
        return visibility.audit_details_for(user, event, remote_account_ids=accounts)

    rows = events.select_related("account").iterator(chunk_size=CHUNK_SIZE)
    lines = _csv_lines(rows, details_of) if fmt == "csv" else _jsonl_lines(rows, details_of)
    response = StreamingHttpResponse(lines, content_type=FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    return response
