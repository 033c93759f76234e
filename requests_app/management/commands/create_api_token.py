"""Make an API token for a user, typically a service account for automation
(operators). The token is printed alone on the last line, once; the portal
keeps only its hash."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from requests_app.errors import DomainError, ValidationFailed
from requests_app.management.commands.register_account import _console_label
from requests_app.services import api_token_create


class Command(BaseCommand):
    help = (
        "Make an API token for USER (e.g. a service account) and print it alone on the last line. "
        "It is shown this once; revoke it on the API tokens page, over the API or in the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", metavar="USER")
        parser.add_argument("--name", help="what the token is for (default: cli-<UTC time>); unique per user")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=settings.API_TOKEN_DEFAULT_EXPIRY_DAYS,
            help=f"days until it stops working: 1 to {settings.API_TOKEN_MAX_EXPIRY_DAYS} "
            f"(default {settings.API_TOKEN_DEFAULT_EXPIRY_DAYS})",
        )

    def handle(self, *args, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist:
            raise CommandError(f"No user {options['username']!r}.") from None
        name = options["name"] or f"cli-{timezone.now():%Y%m%d-%H%M%S}"
        try:
            token, text = api_token_create(
                user=user, name=name, expires_days=options["expires_days"], console_label=_console_label()
            )
        except ValidationFailed as error:
            lines = [f"  {field}: {message}" for field, messages in error.errors.items() for message in messages]
            raise CommandError("No token was made:\n" + "\n".join(lines)) from None
        except DomainError as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            f"Token “{token.name}” (id {token.pk}) for {user.get_username()}, "
            f"expires {token.expiry:%Y-%m-%d %H:%M} UTC. It is shown this once:"
        )
        self.stdout.write(text)
