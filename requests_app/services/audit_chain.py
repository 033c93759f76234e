"""Verifying the audit chain as it grows, and anchoring it outside the database.

Run by beat every AUDIT_CHECKPOINT_INTERVAL_SECONDS and on demand
(``manage.py write_audit_checkpoint``): the chain is verified from where the
last run stopped (the position kept in ``AuditChainState``: never the whole
table again), and when it holds, a signed checkpoint of its newest event goes
to the log and the checkpoint bucket. When it does not hold, the position
stays where it was, the state says why, and the portal's administrators are
told (once per new finding, not at every run).
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from provisioning.audit_checkpoint_store import CheckpointStoreError
from requests_app import notifications
from requests_app.audit import GENESIS, ChainPosition, ChainReport, verify_chain
from requests_app.audit_checkpoints import Checkpoint, publish_checkpoint, sign_checkpoint
from requests_app.models import AuditChainState

logger = logging.getLogger(__name__)


def audit_chain_state() -> AuditChainState:
    """The one state row (created empty at the first call)."""
    state = AuditChainState.objects.order_by("id").first()
    return state if state is not None else AuditChainState.objects.create()


def _position(state: AuditChainState) -> ChainPosition:
    if not state.verified_through_id:
        return GENESIS
    return ChainPosition(
        state.verified_through_id, state.verified_through_hash, state.verified_through_key_id, state.verified_count
    )


def audit_chain_verify(*, checkpoint: bool = True, publish: bool = True) -> tuple[ChainReport, Checkpoint | None]:
    """Verify the events added since the last run; on success, sign a checkpoint
    of the newest one and (``publish``) write it out after the commit."""
    audit_chain_state()
    with transaction.atomic():
        # One run at a time: a second one waits here and starts from the first's end.
        state = AuditChainState.objects.select_for_update().order_by("id").first()
        report = verify_chain(start=_position(state))
        now = timezone.now()
        previous = (state.ok, state.first_broken_id, state.reason)
        state.checked_at = now
        state.ok = report.ok
        state.reason = report.reason
        state.first_broken_id = report.first_broken_id
        signed = None
        if report.ok:
            last = report.last
            state.verified_through_id, state.verified_through_hash = last.id, last.hash
            state.verified_through_key_id, state.verified_count = last.key_id, last.count
            if checkpoint and last.id:
                signed = sign_checkpoint(last, now=now)
                state.last_checkpoint = signed.as_dict()
        state.save()
        if signed is not None and publish:
            transaction.on_commit(lambda: _publish(signed))
        if not report.ok and previous != (False, report.first_broken_id, report.reason):
            transaction.on_commit(lambda: notifications.notify_audit_chain_broken(report))
    if not report.ok:
        logger.error("audit chain broken at event %s: %s", report.first_broken_id, report.reason)
    return report, signed


def _publish(checkpoint: Checkpoint) -> None:
    try:
        publish_checkpoint(checkpoint)
    except CheckpointStoreError as error:
        # The log line is written; the next run writes a newer checkpoint.
        logger.error("audit checkpoint not stored in the bucket: %s", error.message)
