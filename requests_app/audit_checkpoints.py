"""Signed checkpoints of the audit chain, kept outside the database.

A checkpoint states: the chain's event ``last_event_id`` has hash
``last_event_hash`` and is the ``count``-th event, at ``created_at``. It is
signed with HMAC-SHA256 under the chain key (the first of AUDIT_CHAIN_KEYS,
named by ``key_id``), with a domain prefix so that a checkpoint signature can
never pass for an event hash or the other way round. The chain key rather
than a key of its own: whoever holds the chain key can already write a chain
that verifies, so a second key would add a secret to keep without raising
the bar; what a checkpoint adds is that it lives where the database's
operator cannot reach (the log stream, an S3 bucket with Object Lock), so a
trail cut short, rewritten or replaced after it no longer matches it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from provisioning import audit_checkpoint_store as store
from requests_app.audit import ChainPosition, UnknownChainKey, chain_key, signing_key

logger = logging.getLogger("requests_app.audit.checkpoint")

_DOMAIN = b"dms-access-portal audit checkpoint v1\n"
_FIELDS = ("last_event_id", "last_event_hash", "last_event_key_id", "count", "created_at", "key_id")


class CheckpointInvalid(ValueError):
    """A checkpoint that cannot be read, or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    last_event_id: int
    last_event_hash: str
    last_event_key_id: str
    count: int
    created_at: str
    key_id: str
    signature: str

    @property
    def position(self) -> ChainPosition:
        return ChainPosition(self.last_event_id, self.last_event_hash, self.last_event_key_id, self.count)

    def as_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))


def _signature(key: bytes, fields: dict) -> str:
    message = json.dumps({name: fields[name] for name in _FIELDS}, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, _DOMAIN + message, hashlib.sha256).hexdigest()


def sign_checkpoint(position: ChainPosition, *, now: datetime | None = None) -> Checkpoint:
    key_id, key = signing_key()
    fields = {
        "last_event_id": position.id,
        "last_event_hash": position.hash,
        "last_event_key_id": position.key_id,
        "count": position.count,
        "created_at": (now or timezone.now()).isoformat(timespec="seconds"),
        "key_id": key_id,
    }
    return Checkpoint(**fields, signature=_signature(key, fields))


def checkpoint_from_json(text: str | bytes) -> Checkpoint:
    """Parse a checkpoint and check its signature; raises CheckpointInvalid."""
    try:
        data = json.loads(text)
        # A checkpoint line of the JSON log holds it under "audit_checkpoint".
        data = data.get("audit_checkpoint", data)
        checkpoint = Checkpoint(**{name: data[name] for name in (*_FIELDS, "signature")})
        if not isinstance(checkpoint.last_event_id, int) or not isinstance(checkpoint.count, int):
            raise TypeError("last_event_id and count must be integers")
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise CheckpointInvalid(f"not a checkpoint: {error}") from error
    try:
        key = chain_key(checkpoint.key_id)
    except UnknownChainKey:
        raise CheckpointInvalid(f"the checkpoint's key id {checkpoint.key_id!r} is not among AUDIT_CHAIN_KEYS") from None
    if not hmac.compare_digest(_signature(key, checkpoint.as_dict()), str(checkpoint.signature)):
        raise CheckpointInvalid("the checkpoint's signature does not verify (it was altered or not made with the chain key)")
    return checkpoint


def publish_checkpoint(checkpoint: Checkpoint) -> str | None:
    """Write ``checkpoint`` to the log stream and, when AUDIT_CHECKPOINT_BUCKET is
    set, to that bucket; returns its s3:// address (None without a bucket)."""
    # The whole checkpoint in the message too, for LOG_FORMAT=text.
    logger.info("audit checkpoint %s", checkpoint.to_json(), extra={"audit_checkpoint": checkpoint.as_dict()})
    bucket = settings.AUDIT_CHECKPOINT_BUCKET
    if not bucket:
        return None
    key = store.checkpoint_key(settings.AUDIT_CHECKPOINT_PREFIX, checkpoint.last_event_id, checkpoint.created_at)
    store.put_checkpoint(
        client=store.checkpoint_client(),
        bucket=bucket,
        key=key,
        body=checkpoint.to_json().encode(),
        retain_until=timezone.now() + timedelta(days=settings.AUDIT_CHECKPOINT_RETENTION_DAYS),
    )
    return f"s3://{bucket}/{key}"


def load_checkpoint(source: str) -> Checkpoint:
    """A checkpoint from a file (its JSON, or a JSON log line) or ``s3://bucket/key``."""
    if source.startswith("s3://"):
        bucket, _, key = source[len("s3://"):].partition("/")
        if not bucket or not key:
            raise CheckpointInvalid(f"{source}: expected s3://bucket/key")
        return checkpoint_from_json(store.get_checkpoint(client=store.checkpoint_client(), bucket=bucket, key=key))
    try:
        return checkpoint_from_json(Path(source).read_text())
    except OSError as error:
        raise CheckpointInvalid(f"{source}: {error}") from error


def latest_checkpoint(stored: dict | None) -> Checkpoint | None:
    """The newest checkpoint: from the bucket when one is set, else the copy
    the last verification kept in the database (``stored``)."""
    bucket = settings.AUDIT_CHECKPOINT_BUCKET
    if bucket:
        client = store.checkpoint_client()
        key = store.latest_checkpoint_key(client=client, bucket=bucket, prefix=settings.AUDIT_CHECKPOINT_PREFIX)
        return None if key is None else checkpoint_from_json(store.get_checkpoint(client=client, bucket=bucket, key=key))
    return checkpoint_from_json(json.dumps(stored)) if stored else None
