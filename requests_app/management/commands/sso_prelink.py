"""Pre-link a portal user to a single sign-on identity from the command line (operators).

Users who signed in through single sign-on before identities were bound
need this (or the admin) once: their next login is then linked to them.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from requests_app.errors import DomainError, ValidationFailed
from requests_app.management.commands.register_account import _console_label
from requests_app.services import sso_identity_save


class Command(BaseCommand):
    help = "Pre-link a portal user to the provider's identity with this subject, or with this verified e-mail."

    def add_arguments(self, parser):
        parser.add_argument("username")
        how = parser.add_mutually_exclusive_group(required=True)
        how.add_argument("--subject", help="the provider's sub for this person (works for every user)")
        how.add_argument(
            "--email", help="the address the provider vouches for (email_verified); not for staff or users with a password"
        )
        parser.add_argument("--issuer", help="the provider's issuer (default: OIDC_OP_ISSUER)")

    def handle(self, *args, **options):
        issuer = options["issuer"] or getattr(settings, "OIDC_OP_ISSUER", "")
        if not issuer:
            raise CommandError("Give --issuer: single sign-on is not configured here (OIDC_OP_ISSUER).")
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist:
            raise CommandError(f"No user named {options['username']!r}.") from None
        existing = user.sso_identities.filter(issuer=issuer).first()
        try:
            sso_identity_save(
                actor=None,
                actor_label=_console_label(),
                identity_id=existing.pk if existing else None,
                user=user,
                issuer=issuer,
                subject=options["subject"] or "",
                expected_email=options["email"] or "",
            )
        except ValidationFailed as error:
            lines = [f"  {field}: {message}" for field, messages in error.errors.items() for message in messages]
            raise CommandError("The user was not pre-linked:\n" + "\n".join(lines)) from None
        except DomainError as error:
            raise CommandError(error.message) from None
        how = f"subject {options['subject']!r}" if options["subject"] else f"verified e-mail {options['email']!r}"
        self.stdout.write(self.style.SUCCESS(f"Pre-linked {user.get_username()} to the identity with {how} at {issuer}."))
