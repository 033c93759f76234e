"""``GET /api/v1/audit-events/export/``: the audit trail as JSON Lines, for SIEM collectors.

Oldest first from a cursor, so a collector resumes where it stopped. The
cursor is the id of the last event received (every event line carries it as
``cursor``); the last line of a response is ``{"type": "end", "next_cursor":
..., "more": ...}``. Cursors never skip an event: appends hold the audit lock
until they commit (requests_app/audit.py), so events commit in id order.
"""
from __future__ import annotations

import json

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.views import APIView

from requests_app import selectors
from requests_app.api.filters import MAX_ID
from requests_app.api.views import ERROR_401, ERRORS_400
from requests_app.cloudtrail import cloudtrail_hints

CONTENT_TYPE = "application/jsonl; charset=utf-8"
CHUNK_SIZE = 2000
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 100_000


class AuditExportQuerySerializer(serializers.Serializer):
    since = serializers.RegexField(
        r"^[0-9]{1,19}$", required=False, default="0",
        help_text="Cursor: the `cursor` of the last event received (or `next_cursor` of the last response). "
        "Omitted: from the first event.",
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_LIMIT, required=False, default=DEFAULT_LIMIT,
        help_text=f"At most this many events in this response (default {DEFAULT_LIMIT}).",
    )
    request = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, help_text="Only events of this request (id).")
    account = serializers.RegexField(r"^\d{12}$", required=False, help_text="Only events about this account (12-digit id).")

    def validate(self, attrs):
        # DRF reads an empty query value as an omitted one; the schema (and so this) refuses it.
        blank = [name for name in self.fields if self.initial_data.get(name) == ""]
        if blank:
            raise serializers.ValidationError({name: ["May not be empty."] for name in blank})
        return attrs

    def validate_since(self, value: str) -> int:
        if int(value) > MAX_ID:
            raise serializers.ValidationError("not a cursor")
        return int(value)


def event_line(event) -> dict:
    """One event as exported: its contents, its link in the chain, and CloudTrail hints."""
    return {
        "type": "event",
        "cursor": str(event.id),
        "id": event.id,
        "created_at": event.created_at.isoformat(),
        "actor": event.actor_label,
        "source_ip": event.source_ip,
        "action": event.action,
        "request": event.request_id,
        "account": event.account.account_id if event.account_id else None,
        "target_arn": event.target_arn,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "key_id": event.key_id,
        "cloudtrail": cloudtrail_hints(event),
    }


def _lines(events, *, since: int, limit: int):
    last, sent = since, 0
    for event in events:
        yield json.dumps(event_line(event), sort_keys=True, default=str) + "\n"
        last, sent = event.id, sent + 1
    yield json.dumps({"type": "end", "next_cursor": str(last), "more": sent == limit, "count": sent}) + "\n"


class _JsonForErrors(DefaultContentNegotiation):
    # The events are JSON Lines whatever Accept says; errors are JSON.
    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AuditEventExportView(APIView):
    content_negotiation_class = _JsonForErrors

    @extend_schema(
        operation_id="audit_events_export",
        summary="Stream audit events as JSON Lines, oldest first, resumable from a cursor",
        description=(
            "Scoped like `GET /api/v1/audit-events/`: staff see every event, others those of the requests "
            "and accounts they may see. One JSON object per line. Each event line has `type: \"event\"`, its "
            "`cursor`, the event's fields, its chain link (`prev_hash`, `hash`, `key_id`: the key of its "
            "HMAC) and `cloudtrail`: one lookup hint per AWS request id (`event_source`, `event_name`, "
            "`request_id`, `account`, `region`, `event_time`). The last line is "
            "`{\"type\": \"end\", \"next_cursor\": \"<cursor>\", \"more\": <bool>, \"count\": <n>}`: call again "
            "with `since=<next_cursor>` (at once while `more` is true, later otherwise). A response cut short "
            "resumes from the `cursor` of the last complete line."
        ),
        parameters=[AuditExportQuerySerializer],
        responses={
            (200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR, description="JSON Lines: events, then the end line with `next_cursor`."),
            400: ERRORS_400,
            401: ERROR_401,
        },
    )
    def get(self, request):
        query = AuditExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        events = (
            selectors.audit_events_visible_to(
                user=request.user, request_id=data.get("request"), account_id=data.get("account")
            )
            .filter(id__gt=data["since"])
            .order_by("id")[: data["limit"]]
        )
        lines = _lines(events.iterator(chunk_size=CHUNK_SIZE), since=data["since"], limit=data["limit"])
        response = StreamingHttpResponse(lines, content_type=CONTENT_TYPE)
        response["Cache-Control"] = "no-store"
        return response
