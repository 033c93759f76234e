"""Change who approves and files for a registered account (operators)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from requests_app.errors import DomainError, ValidationFailed
from requests_app.management.commands.register_account import _console_label
from requests_app.services import account_members_set


def _usernames(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


class Command(BaseCommand):
    help = (
        "Replace a registered account's approvers, requesters and/or required approvals "
        "(audited; the account's approvers are notified). Options not given stay as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account-id", required=True, help="12-digit AWS account id")
        parser.add_argument(
            "--approvers", metavar="USERNAMES", help='comma-separated; the new list ("" for nobody)'
        )
        parser.add_argument(
            "--requesters", metavar="USERNAMES", help='comma-separated; the new list ("" for nobody)'
        )
        parser.add_argument("--required-approvals", type=int)

    def handle(self, *args, **options):
        try:
            account = account_members_set(
                actor=None,
                actor_label=_console_label(),
                account_id=options["account_id"],
                approvers=_usernames(options["approvers"]),
                requesters=_usernames(options["requesters"]),
                required_approvals=options["required_approvals"],
            )
        except ValidationFailed as error:
            lines = [f"  {field}: {message}" for field, messages in error.errors.items() for message in messages]
            raise CommandError("Nothing was changed:\n" + "\n".join(lines)) from None
        except DomainError as error:
            raise CommandError(error.message) from None
        approvers = ", ".join(sorted(user.get_username() for user in account.approvers.all())) or "nobody"
        requesters = ", ".join(sorted(user.get_username() for user in account.requesters.all())) or "nobody"
        self.stdout.write(
            self.style.SUCCESS(
                f"{account}: approvers {approvers}; requesters {requesters}; "
                f"{account.required_approvals} approval(s) required."
            )
        )
