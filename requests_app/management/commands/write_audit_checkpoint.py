"""Verify the audit events added since the last check and write a signed checkpoint now."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from provisioning.audit_checkpoint_store import CheckpointStoreError
from requests_app.audit_checkpoints import publish_checkpoint
from requests_app.services.audit_chain import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Verify the audit chain from the last verified event on and write a signed checkpoint of its newest "
        "event to the log and, when AUDIT_CHECKPOINT_BUCKET is set, to S3. Prints the checkpoint."
    )

    def handle(self, *args, **options):
        report, checkpoint = audit_chain_verify(publish=False)
        if not report.ok:
            raise CommandError(
                f"Audit chain broken at event {report.first_broken_id}: {report.reason}; no checkpoint written.",
                returncode=1,
            )
        if checkpoint is None:
            self.stdout.write("No audit events yet; no checkpoint written.")
            return
        try:
            address = publish_checkpoint(checkpoint)
        except CheckpointStoreError as error:
            raise CommandError(f"Checkpoint logged but not stored: {error.message}", returncode=1) from error
        self.stdout.write(checkpoint.to_json())
        if address:
            self.stderr.write(f"Stored as {address}")
