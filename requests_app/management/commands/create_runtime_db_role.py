"""Create (or re-grant) the Postgres role the running portal connects as."""
from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from requests_app.database_roles import RoleError, connected_as_owner, grant_runtime_role


class Command(BaseCommand):
    help = (
        "Create the runtime database role NAME if missing and grant it the portal's tables, with only "
        "SELECT and INSERT on the audit trail. Run as the tables' owner (MIGRATION_DATABASE_URL if set)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The role, e.g. the user of DATABASE_URL.")
        parser.add_argument(
            "--password-env", metavar="VARIABLE",
            help="Environment variable holding the new role's password (never on the command line).",
        )

    def handle(self, *args, name, password_env=None, **options):
        password = None
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"{password_env} is not set")
        try:
            if settings.MIGRATION_DATABASE_URL:
                with connected_as_owner(settings.MIGRATION_DATABASE_URL):
                    created = grant_runtime_role(name, password=password)
            else:
                created = grant_runtime_role(name, password=password)
        except RoleError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"{'Created and granted' if created else 'Granted'} the runtime role {name}."))
