"""Re-read users' groups from the identity provider between logins (operators):
``manage.py sync_sso_groups --username U`` or ``--all``."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from requests_app.management.commands.register_account import _console_label
from requests_app.models import SsoIdentity
from requests_app.services.sso_groups import groups_sync_enabled, sso_groups_resync


class Command(BaseCommand):
    help = (
        "Set users' groups from the identity provider's user info now, with the refresh token kept from "
        "their last single sign-on (audited as sso.groups_changed). A user for whom the provider cannot be "
        "asked keeps their groups until their next login, and is listed."
    )

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--username", help="one user signed in through single sign-on")
        who.add_argument("--all", action="store_true", help="every user linked to the provider")

    def handle(self, *args, **options):
        if not getattr(settings, "OIDC_ENABLED", False):
            raise CommandError("Single sign-on is not configured (OIDC_RP_CLIENT_ID): there is no provider to ask.")
        if not groups_sync_enabled():
            raise CommandError("OIDC_GROUPS_CLAIM is empty: logins do not set groups, so there is nothing to re-sync.")
        from requests_app.web.oidc import GroupsResyncUnavailable, userinfo_by_refresh_token

        identities = (
            SsoIdentity.objects.select_related("user")
            .filter(issuer=settings.OIDC_OP_ISSUER)
            .exclude(subject="")
            .order_by("user__username")
        )
        if options["username"]:
            identities = identities.filter(user__username=options["username"])
            if not identities.exists():
                raise CommandError(f"{options['username']} has no single sign-on identity at {settings.OIDC_OP_ISSUER}.")
        label = _console_label()
        not_now = []
        for identity in identities:
            username = identity.user.get_username()
            try:
                claims, refresh_token = userinfo_by_refresh_token(identity.refresh_token)
                added, removed = sso_groups_resync(
                    identity_id=identity.pk, claims=claims, refresh_token=refresh_token, actor_label=label
                )
            except (GroupsResyncUnavailable, ValueError) as reason:
                not_now.append(username)
                self.stdout.write(f"{username}: not re-synced now: {reason}. Their groups follow at their next login.")
                continue
            change = ", ".join([*(f"+{name}" for name in added), *(f"-{name}" for name in removed)]) or "unchanged"
            self.stdout.write(f"{username}: groups {change}.")
        if not_now:
            self.stderr.write(
                f"{len(not_now)} user(s) not re-synced now ({', '.join(not_now)}); "
                "their groups are set again at their next single sign-on."
            )
