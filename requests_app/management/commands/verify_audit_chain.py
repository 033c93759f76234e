"""Verify the audit trail's hash chain; exit non-zero at the first broken link."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from requests_app.audit import verify_chain


class Command(BaseCommand):
    help = "Verify every audit event's hash chain and name the first event that does not verify."

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.ok:
            raise CommandError(
                f"Audit chain broken at event {report.first_broken_id}: {report.reason} "
                f"({report.checked} events before it verified).",
                returncode=1,
            )
        self.stdout.write(self.style.SUCCESS(f"Audit chain verified: {report.checked} events."))
