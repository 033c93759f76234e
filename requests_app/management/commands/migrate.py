"""``manage.py migrate`` as the owner of the tables.

With ``MIGRATION_DATABASE_URL`` set, the migrations run as that role rather
than as the runtime role of ``DATABASE_URL``, and afterwards the runtime role
is created if missing (with the password ``DATABASE_URL`` gives) and granted
what the portal needs (requests_app/database_roles.py). Unset (SQLite, the
quickstart), this is Django's own migrate.
"""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import DEFAULT_DB_ALIAS, connections

from requests_app.database_roles import RoleError, connected_as_owner, grant_runtime_role


class Command(DjangoMigrateCommand):
    help = DjangoMigrateCommand.help + " With MIGRATION_DATABASE_URL, runs as the owner role and grants the runtime role."

    def handle(self, *args, **options):
        url = settings.MIGRATION_DATABASE_URL
        if not url or options["database"] != DEFAULT_DB_ALIAS:
            return super().handle(*args, **options)
        connection = connections[DEFAULT_DB_ALIAS]
        runtime_user, runtime_password = connection.settings_dict["USER"], connection.settings_dict["PASSWORD"]
        try:
            with connected_as_owner(url):
                super().handle(*args, **options)
                if connection.vendor == "postgresql" and runtime_user and runtime_user != connection.settings_dict["USER"]:
                    created = grant_runtime_role(runtime_user, password=runtime_password or None)
                    if options["verbosity"]:
                        verb = "Created and granted" if created else "Granted"
                        self.stdout.write(f"{verb} the runtime role {runtime_user}.")
        except RoleError as error:
            raise CommandError(str(error)) from error
