"""The audit trail: one function appends, one function verifies.

Each event's ``hash`` is an HMAC-SHA256, with a key from ``AUDIT_CHAIN_KEYS``
(settings), over the previous event's hash, the key's id and the event's
canonical JSON, so editing, deleting or re-ordering any row breaks the chain
from that row on, and someone with the database but not the key cannot write
a chain that verifies. Each event names its key (``key_id``), so a new key
signs new events while the old ones stay verifiable. Events written before
the chain was keyed have the key id ``sha256-legacy`` and a plain SHA-256
hash; they are accepted only as the chain's prefix.

Appends are serialised (an advisory lock on Postgres, an immediate
transaction on SQLite) so the chain never forks. The lock is held until the
appending transaction commits, so the work done under it is kept to the
least: the event is built, checked and serialised before it is taken; under
it an append reads the last hash (on Postgres in the same round trip as
taking the lock, ``audit_chain_head``), stamps the time, hashes and inserts
with one prepared statement. Callers inside a larger transaction record
their event as late in it as they can: everything after it runs under the
lock too.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from requests_app.models import AccessRequest, AuditEvent, AwsAccount, api_token_in_use, slack_origin

GENESIS_HASH = "0" * 64
LEGACY_KEY_ID = "sha256-legacy"
WORKER_LABEL = "worker"
# Arbitrary constant key for the Postgres advisory lock that serialises appends.
_AUDIT_LOCK_KEY = 0x4155444954  # "AUDIT"


class UnknownChainKey(LookupError):
    """An event or checkpoint names a key that AUDIT_CHAIN_KEYS does not hold."""


def signing_key() -> tuple[str, bytes]:
    """The key new events (and checkpoints) are signed with: the first of AUDIT_CHAIN_KEYS."""
    return settings.AUDIT_CHAIN_KEYS[0]


def chain_key(key_id: str) -> bytes:
    for candidate_id, key in settings.AUDIT_CHAIN_KEYS:
        if candidate_id == key_id:
            return key
    raise UnknownChainKey(key_id)


def canonical_event(event: AuditEvent) -> str:
    """The exact text that is hashed for ``event`` (independent of storage order)."""
    return _canonical({**_payload(event), "created_at": event.created_at.isoformat(timespec="microseconds")})


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def _payload(event) -> dict[str, Any]:
    """What ``canonical_event`` hashes, but for the time."""
    return {
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "source_ip": event.source_ip,
        "action": event.action,
        "request_id": event.request_id,
        "account_id": event.account_id,
        "target_arn": event.target_arn,
        "details": event.details,
    }


def legacy_chain_hash(prev_hash: str, canonical: str) -> str:
    """The hash of an event written before the chain was keyed."""
    return hashlib.sha256((prev_hash + "\n" + canonical).encode()).hexdigest()


def keyed_chain_hash(key: bytes, key_id: str, prev_hash: str, canonical: str) -> str:
    return hmac.new(key, f"{prev_hash}\n{key_id}\n{canonical}".encode(), hashlib.sha256).hexdigest()


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    """What ``event.hash`` must be after ``prev_hash``, with the key ``event.key_id`` names."""
    if event.key_id == LEGACY_KEY_ID:
        return legacy_chain_hash(prev_hash, canonical_event(event))
    return keyed_chain_hash(chain_key(event.key_id), event.key_id, prev_hash, canonical_event(event))


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
    it (id and name; never the token); when they acted through the Slack app,
    ``details["via"]`` is ``"slack"`` and ``details["slack_user"]`` names the
    Slack user (and workspace) who pressed the button.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit events are written in the same transaction as the change they record")
    if actor is not None and not actor_label:
        actor_label = actor.get_username()
    details = dict(details or {})
    token = api_token_in_use(actor)
    if token is not None:
        details["via_token"] = {"id": token.pk, "name": token.name}
    origin = slack_origin(actor)
    if origin is not None:
        details["via"] = "slack"
        details["slack_user"] = dict(origin)
    event = AuditEvent(
        actor=actor,
        actor_label=actor_label or WORKER_LABEL,
        source_ip=source_ip or None,
        action=action,
        request=request,
        account=account if account is not None else (request.remote_account if request is not None else None),
        target_arn=target_arn,
        details=_normalise(details),
    )
    event.key_id, key = signing_key()
    before, after = _canonical_around_time(event)
    sql, values = _prepared_insert(event)
    # Under the lock: the last hash, the time (so that times follow the
    # chain's order), the hash, the insert.
    event.prev_hash = _lock_and_read_head() or GENESIS_HASH
    event.created_at = timezone.now()
    canonical = f"{before}{json.dumps(event.created_at.isoformat(timespec='microseconds'))}{after}"
    event.hash = keyed_chain_hash(key, event.key_id, event.prev_hash, canonical)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, *(_db_value(event, name) for name in _LOCKED_COLUMNS)])
        event.pk = cursor.fetchone()[0]
    event._state.adding = False
    event._state.db = connection.alias
    return event


# The created_at member with an empty value, where ``_canonical_around_time``
# splits the canonical text. Keys are sorted (only scalars come before it) and
# quotes inside strings are escaped, so its first occurrence is the top-level member.
_TIME_MEMBER = '"created_at":""'
# The columns filled in under the lock; every other one is prepared before it.
_LOCKED_COLUMNS = ("created_at", "prev_hash", "hash")


def _canonical_around_time(event: AuditEvent) -> tuple[str, str]:
    """``canonical_event(event)`` before and after its created_at value (a
    JSON string), so the event is serialised before the lock, its time after."""
    before, _, after = _canonical({**_payload(event), "created_at": ""}).partition(_TIME_MEMBER)
    return f'{before}"created_at":', after


def _db_value(event: AuditEvent, name: str) -> Any:
    field = AuditEvent._meta.get_field(name)
    return field.get_db_prep_save(getattr(event, field.attname), connection)


def _prepared_insert(event: AuditEvent) -> tuple[str, list[Any]]:
    """The INSERT of ``event``'s row (returning its id) and its values, but
    for ``_LOCKED_COLUMNS``, which come last."""
    names = [field.name for field in AuditEvent._meta.concrete_fields
             if not field.primary_key and field.name not in _LOCKED_COLUMNS]
    quote = connection.ops.quote_name
    columns = [quote(AuditEvent._meta.get_field(name).column) for name in (*names, *_LOCKED_COLUMNS)]
    sql = (f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({', '.join(columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING {quote(AuditEvent._meta.pk.column)}")
    return sql, [_db_value(event, name) for name in names]


def _lock_and_read_head() -> str | None:
    """Take the append lock (held until commit) and read the last event's hash."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Both in one round trip: see migration 0014_bench.
            cursor.execute("SELECT audit_chain_head(%s)", [_AUDIT_LOCK_KEY])
            return cursor.fetchone()[0]
    # SQLite: the immediate transaction already serialises writers.
    return AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()


@dataclass(frozen=True)
class ChainPosition:
    """A point of the chain: the event ``id``, its ``hash`` and ``key_id``, and
    ``count``, the number of events up to and including it."""

    id: int
    hash: str
    key_id: str
    count: int

    @property
    def keyed(self) -> bool:
        return self.key_id not in ("", LEGACY_KEY_ID)


GENESIS = ChainPosition(id=0, hash=GENESIS_HASH, key_id="", count=0)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str = ""
    # The last event that verified (GENESIS if none did).
    last: ChainPosition = GENESIS


# The columns ``chain_hash`` reads, plus the links: verifying reads only these.
_CHAIN_COLUMNS = (
    "id", "created_at", "actor_id", "actor_label", "source_ip", "action",
    "request_id", "account_id", "target_arn", "details", "prev_hash", "hash", "key_id",
)
_ChainRow = namedtuple("_ChainRow", _CHAIN_COLUMNS)


def verify_chain(
    *, start: ChainPosition = GENESIS, expect: ChainPosition | None = None, batch_size: int = 5000
) -> ChainReport:
    """Walk the chain in id order from ``start``; name the first event that does not verify.

    ``start`` is a position verified before (by an earlier run, or a signed
    checkpoint): the event there must still have the hash it had, and the walk
    goes on after it, so each run reads only the new events. ``expect`` is a
    checkpoint's position the walk must pass through with the same hash and
    count: a trail that ends before it lost its tail, one that differs there
    was replaced.

    One query through a server-side cursor (one snapshot of the table, read
    ``batch_size`` rows at a time) yields plain tuples: no model instance is
    built, which at a million events is most of the time a walk would take.
    The rows carry the same converted values a model would, so
    ``canonical_event`` sees exactly what it saw when the event was written.
    """
    macs: dict[str, Any] = {}
    position = start
    checked = 0

    def broken(event_id: int | None, reason: str) -> ChainReport:
        return ChainReport(False, checked, event_id, reason, position)

    with transaction.atomic():
        if start.id:
            anchor = AuditEvent.objects.filter(id=start.id).values_list("hash", flat=True).first()
            if anchor is None:
                return broken(start.id, f"event {start.id}, verified before, is gone (the trail was cut or replaced)")
            if anchor != start.hash:
                return broken(start.id, f"event {start.id} no longer has the hash it had when it was verified (the trail was rewritten or replaced)")
        if expect is not None and expect.id < start.id:
            expect = None
        rows = (
            AuditEvent.objects.filter(id__gt=start.id).order_by("id").values_list(*_CHAIN_COLUMNS)
            .iterator(chunk_size=batch_size)
        )
        for event in map(_ChainRow._make, rows):
            if expect is not None and event.id > expect.id:
                return broken(event.id, f"event {expect.id} of the checkpoint is missing (the trail was cut or replaced)")
            if event.prev_hash != position.hash:
                before = f"event {position.id}" if position.id else "the start of the chain"
                return broken(
                    event.id,
                    f"prev_hash does not match the hash of {before}, the event before it "
                    "(an event in between was deleted, or an earlier one rewritten)",
                )
            canonical = canonical_event(event)
            if event.key_id == LEGACY_KEY_ID:
                if position.keyed:
                    return broken(event.id, "an unkeyed (sha256-legacy) event after keyed ones (written without the chain key)")
                expected = legacy_chain_hash(position.hash, canonical)
            else:
                mac = macs.get(event.key_id)
                if mac is None:
                    try:
                        mac = macs[event.key_id] = hmac.new(chain_key(event.key_id), digestmod=hashlib.sha256)
                    except UnknownChainKey:
                        return broken(event.id, f"the event's key id {event.key_id!r} is not among AUDIT_CHAIN_KEYS")
                mac = mac.copy()
                mac.update(f"{position.hash}\n{event.key_id}\n{canonical}".encode())
                expected = mac.hexdigest()
            if not hmac.compare_digest(expected, event.hash):
                return broken(event.id, "hash does not match the event's contents")
            position = ChainPosition(event.id, event.hash, event.key_id, position.count + 1)
            checked += 1
            if expect is not None and event.id == expect.id:
                if (event.hash, position.count) != (expect.hash, expect.count):
                    return broken(
                        event.id,
                        f"event {expect.id} differs from the checkpoint (hash or count; the trail was replaced)",
                    )
                expect = None
    if expect is not None:
        return broken(
            None,
            f"the trail ends at event {position.id} ({position.count} events), before the checkpoint's "
            f"event {expect.id} ({expect.count} events): its tail was deleted",
        )
    return ChainReport(ok=True, checked=checked, last=position)
