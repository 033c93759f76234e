"""Lift a login lockout (audited): ``manage.py unlock_login [--username U] [--ip-address A]``."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from requests_app.errors import DomainError, ValidationFailed
from requests_app.management.commands.register_account import _console_label
from requests_app.services import login_lockout_reset


class Command(BaseCommand):
    help = (
        "Forget the failed logins of a user name and/or from an address, lifting their lockout. "
        "Recorded in the audit trail as login.unlocked."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="", help="The user name that is locked out.")
        parser.add_argument("--ip-address", default="", help="The address that is locked out.")

    def handle(self, *args, **options):
        try:
            cleared = login_lockout_reset(
                actor=None,
                actor_label=_console_label(),
                username=options["username"],
                ip_address=options["ip_address"],
            )
        except ValidationFailed as error:
            raise CommandError(" ".join(m for messages in error.errors.values() for m in messages)) from None
        except DomainError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"Cleared {cleared} recorded failed login(s).")
