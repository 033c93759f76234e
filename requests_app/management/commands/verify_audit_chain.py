"""Verify the audit trail's hash chain; exit non-zero at the first broken link.

Without options the whole chain is walked, and must pass through the newest
checkpoint there is (the checkpoint bucket's when AUDIT_CHECKPOINT_BUCKET is
set, else the copy kept in the database). ``--checkpoint FILE|s3://bucket/key``
names the checkpoint to hold the trail against; ``--since-checkpoint`` starts
from the newest checkpoint instead of the first event and reads only what
came after it. Either way a checkpoint whose signature does not verify, a
trail shorter than its checkpoint (a deleted tail) and a trail that differs
from it (a replaced one) are errors.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from provisioning.audit_checkpoint_store import CheckpointStoreError
from requests_app.audit import verify_chain
from requests_app.audit_checkpoints import CheckpointInvalid, latest_checkpoint, load_checkpoint
from requests_app.models import AuditChainState, AuditEvent


class Command(BaseCommand):
    help = "Verify the audit events' keyed hash chain against its checkpoints and name the first event that does not verify."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--checkpoint", metavar="FILE|s3://BUCKET/KEY",
            help="Hold the whole trail against this checkpoint (a checkpoint file, a JSON log line, or an S3 object).",
        )
        which.add_argument(
            "--since-checkpoint", action="store_true",
            help="Start from the newest checkpoint and verify only the events after it.",
        )

    def handle(self, *args, checkpoint=None, since_checkpoint=False, **options):
        try:
            if checkpoint:
                anchor = load_checkpoint(checkpoint)
            else:
                state = AuditChainState.objects.order_by("id").first()
                anchor = latest_checkpoint(state.last_checkpoint if state else None)
        except CheckpointInvalid as error:
            raise CommandError(f"Checkpoint does not verify: {error}", returncode=2) from error
        except CheckpointStoreError as error:
            raise CommandError(f"Checkpoint cannot be read: {error.message}", returncode=2) from error
        if since_checkpoint and anchor is None:
            raise CommandError("No checkpoint to start from.", returncode=2)

        if since_checkpoint:
            # The events up to the checkpoint are not walked again; that none
            # of them went missing is their count.
            counted = AuditEvent.objects.filter(id__lte=anchor.last_event_id).aggregate(n=Count("id"))["n"]
            if counted != anchor.count:
                raise CommandError(
                    f"Audit trail does not match checkpoint of {anchor.created_at}: {counted} events up to event "
                    f"{anchor.last_event_id}, the checkpoint says {anchor.count} (events were deleted or added).",
                    returncode=1,
                )
            report = verify_chain(start=anchor.position)
        else:
            report = verify_chain(expect=anchor.position if anchor else None)
        if not report.ok:
            where = f"at event {report.first_broken_id}" if report.first_broken_id else "at its end"
            raise CommandError(
                f"Audit chain broken {where}: {report.reason} ({report.checked} events before it verified).",
                returncode=1,
            )
        against = f", through checkpoint of {anchor.created_at} (event {anchor.last_event_id})" if anchor else ""
        self.stdout.write(self.style.SUCCESS(f"Audit chain verified: {report.checked} events{against}."))
