"""The audit trail: one function appends, one function verifies.

Each event's ``hash`` is SHA-256 over the previous event's hash and the
event's canonical JSON, so editing, deleting or re-ordering any row breaks
the chain from that row on. Appends are serialised (an advisory lock on
Postgres, an immediate transaction on SQLite) so the chain never forks.
"""
from __future__ import annotations

import hashlib
import json
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from requests_app.models import AccessRequest, AuditEvent, AwsAccount, api_token_in_use

GENESIS_HASH = "0" * 64
WORKER_LABEL = "worker"
# Arbitrary constant key for the Postgres advisory lock that serialises appends.
_AUDIT_LOCK_KEY = 0x4155444954  # "AUDIT"


def canonical_event(event: AuditEvent) -> str:
    """The exact text that is hashed for ``event`` (independent of storage order)."""
    payload = {
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "source_ip": event.source_ip,
        "action": event.action,
        "request_id": event.request_id,
        "account_id": event.account_id,
        "target_arn": event.target_arn,
        "details": event.details,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + "\n" + canonical_event(event)).encode()).hexdigest()


def _normalise(details: dict[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON so what is hashed is what the database gives back.
    return json.loads(json.dumps(details, sort_keys=True, default=str))


def record_event(
    *,
    action: str,
    actor=None,
    actor_label: str | None = None,
    source_ip: str | None = None,
    request: AccessRequest | None = None,
    account: AwsAccount | None = None,
    target_arn: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it records.

    When ``actor`` signed in with an API token, ``details["via_token"]`` names
    it (id and name; never the token).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit events are written in the same transaction as the change they record")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_AUDIT_LOCK_KEY])
    if actor is not None and not actor_label:
        actor_label = actor.get_username()
    details = dict(details or {})
    token = api_token_in_use(actor)
    if token is not None:
        details["via_token"] = {"id": token.pk, "name": token.name}
    event = AuditEvent(
        created_at=timezone.now(),
        actor=actor,
        actor_label=actor_label or WORKER_LABEL,
        source_ip=source_ip or None,
        action=action,
        request=request,
        account=account if account is not None else (request.remote_account if request is not None else None),
        target_arn=target_arn,
        details=_normalise(details),
    )
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    event.prev_hash = last or GENESIS_HASH
    event.hash = chain_hash(event.prev_hash, event)
    event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str = ""


# The columns ``chain_hash`` reads, plus the links: verifying reads only these.
_CHAIN_COLUMNS = (
    "id", "created_at", "actor_id", "actor_label", "source_ip", "action",
    "request_id", "account_id", "target_arn", "details", "prev_hash", "hash",
)
_ChainRow = namedtuple("_ChainRow", _CHAIN_COLUMNS)


def verify_chain(*, batch_size: int = 5000) -> ChainReport:
    """Walk the whole chain in id order; name the first event that does not verify.

    One query through a server-side cursor (one snapshot of the table, read
    ``batch_size`` rows at a time) yields plain tuples: no model instance is
    built, which at a million events is most of the time a walk would take.
    The rows carry the same converted values a model would, so
    ``chain_hash`` sees exactly what it saw when the event was written.
    """
    prev_hash = GENESIS_HASH
    checked = 0
    last_id = 0
    with transaction.atomic():
        rows = AuditEvent.objects.order_by("id").values_list(*_CHAIN_COLUMNS).iterator(chunk_size=batch_size)
        for event in map(_ChainRow._make, rows):
            if event.prev_hash != prev_hash:
                before = f"event {last_id}" if last_id else "the start of the chain"
                return ChainReport(
                    False,
                    checked,
                    event.id,
                    f"prev_hash does not match the hash of {before}, the event before it "
                    "(an event in between was deleted, or an earlier one rewritten)",
                )
            if chain_hash(prev_hash, event) != event.hash:
                return ChainReport(False, checked, event.id, "hash does not match the event's contents")
            prev_hash = event.hash
            checked += 1
            last_id = event.id
    return ChainReport(ok=True, checked=checked)
