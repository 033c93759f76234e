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
        "Replace a registered account's approvers, requesters, their groups, required approvals and/or "
        "how long its requests may wait (audited; the account's approvers are notified). "
        "Options not given stay as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account-id", required=True, help="12-digit AWS account id")
        parser.add_argument(
            "--approvers", metavar="USERNAMES", help='comma-separated; the new list ("" for nobody)'
        )
        parser.add_argument(
            "--requesters", metavar="USERNAMES", help='comma-separated; the new list ("" for nobody)'
        )
        parser.add_argument(
            "--approver-groups", metavar="GROUPS", help='comma-separated group names; the new list ("" for none)'
        )
        parser.add_argument(
            "--requester-groups", metavar="GROUPS", help='comma-separated group names; the new list ("" for none)'
        )
        parser.add_argument("--required-approvals", type=int)
        parser.add_argument("--remind-after-hours", type=int, help="remind the approvers every N hours (0: never)")
        parser.add_argument("--escalate-after-hours", type=int, help="escalate after N hours (0: never)")
        parser.add_argument("--escalation-groups", metavar="GROUPS", help="comma-separated group names to escalate to")
        parser.add_argument("--escalation-users", metavar="USERNAMES", help="comma-separated usernames to escalate to")
        parser.add_argument("--expire-after-days", type=int, help="expire a request still pending after N days")

    def handle(self, *args, **options):
        try:
            account = account_members_set(
                actor=None,
                actor_label=_console_label(),
                account_id=options["account_id"],
                approvers=_usernames(options["approvers"]),
                requesters=_usernames(options["requesters"]),
                approver_groups=_usernames(options["approver_groups"]),
                requester_groups=_usernames(options["requester_groups"]),
                required_approvals=options["required_approvals"],
                approval_reminder_hours=options["remind_after_hours"],
                escalate_after_hours=options["escalate_after_hours"],
                escalation_groups=_usernames(options["escalation_groups"]),
                escalation_users=_usernames(options["escalation_users"]),
                expire_pending_after_days=options["expire_after_days"],
            )
        except ValidationFailed as error:
            lines = [f"  {field}: {message}" for field, messages in error.errors.items() for message in messages]
            raise CommandError("Nothing was changed:\n" + "\n".join(lines)) from None
        except DomainError as error:
            raise CommandError(error.message) from None
        approvers = ", ".join(sorted(user.get_username() for user in account.approvers.all())) or "nobody"
        requesters = ", ".join(sorted(user.get_username() for user in account.requesters.all())) or "nobody"
        approver_groups = ", ".join(sorted(group.name for group in account.approver_groups.all())) or "none"
        requester_groups = ", ".join(sorted(group.name for group in account.requester_groups.all())) or "none"
        self.stdout.write(
            self.style.SUCCESS(
                f"{account}: approvers {approvers}; approver groups {approver_groups}; requesters {requesters}; "
                f"requester groups {requester_groups}; "
                f"{account.required_approvals} approval(s) required."
            )
        )
