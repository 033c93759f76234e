"""Write a request's change as CloudFormation, the Remote documents or AWS CLI commands (operators)."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from provisioning.errors import ProvisioningError
from requests_app.errors import DomainError, ValidationFailed
from requests_app.export import FORMATS, grant_export
from requests_app.models import AccessRequest


class Command(BaseCommand):
    help = (
        "Export a request's change: the DataLake role as CloudFormation, the two Remote-side policy "
        "documents as JSON, or the equivalent AWS CLI commands (with the JSON files they read)."
    )

    def add_arguments(self, parser):
        parser.add_argument("request_id", type=int)
        parser.add_argument("--format", choices=FORMATS, default="cloudformation")
        parser.add_argument(
            "--live",
            action="store_true",
            help="merge the Remote documents into the secret and key policies as AWS holds them now",
        )
        parser.add_argument(
            "--output", type=Path, metavar="DIR",
            help="write the export (and, for cli, the JSON files it reads) into DIR instead of printing it",
        )

    def handle(self, *args, **options):
        request = (
            AccessRequest.objects.select_related("datalake_account", "remote_account")
            .filter(pk=options["request_id"])
            .first()
        )
        if request is None:
            raise CommandError(f"There is no request #{options['request_id']}.")
        try:
            exported = grant_export(request, options["format"], live=options["live"])
        except ValidationFailed as error:
            lines = [f"  {field}: {message}" for field, messages in error.errors.items() for message in messages]
            raise CommandError("Nothing exported:\n" + "\n".join(lines)) from None
        except (DomainError, ProvisioningError) as error:
            raise CommandError(error.message) from None
        directory = options["output"]
        if directory is None:
            self.stdout.write(exported.content, ending="")
            for name, text in exported.files.items():
                self.stdout.write(f"\n# ---- {name}\n{text}", ending="")
            return
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in {exported.filename: exported.content, **exported.files}.items():
            (directory / name).write_text(text)
            self.stdout.write(str(directory / name))
