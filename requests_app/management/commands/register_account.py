"""Register an AWS account from the command line (operators)."""
from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from requests_app.errors import DomainError, ValidationFailed
from requests_app.services import account_register


def _usernames(values: list[str] | None) -> list[str]:
    # Accept both "--approver a --approver b" and "--approver a,b".
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


def _console_label() -> str:
    try:
        return f"console:{getpass.getuser()}"
    except (OSError, KeyError):
        # No login name in some containers; the audit event still says where it came from.
        return "console"


class Command(BaseCommand):
    help = "Register an AWS account: its provisioner role, approvers and requesters."

    def add_arguments(self, parser):
        parser.add_argument("--account-id", required=True, help="12-digit AWS account id")
        parser.add_argument("--name", required=True)
        parser.add_argument("--datalake", action="store_true", help="DMS runs here; requesters file for it")
        parser.add_argument("--remote", action="store_true", help="secrets live here; approvers decide for it")
        parser.add_argument(
            "--provisioner-role-arn", required=True, help="role in this account that the workers assume"
        )
        parser.add_argument(
            "--external-id",
            default="",
            help="ExternalId the provisioner role's trust policy requires (required for a Remote account); "
            "stored encrypted and never shown again",
        )
        parser.add_argument(
            "--no-external-id",
            action="store_true",
            help="register a Remote account without an external id (not recommended)",
        )
        parser.add_argument("--default-region", default="eu-west-1")
        parser.add_argument(
            "--approver", dest="approvers", action="append", metavar="USERNAME", help="repeat, or comma-separate"
        )
        parser.add_argument(
            "--requester", dest="requesters", action="append", metavar="USERNAME", help="repeat, or comma-separate"
        )
        parser.add_argument(
            "--approver-group", dest="approver_groups", action="append", metavar="GROUP",
            help="a group whose members approve; repeat, or comma-separate",
        )
        parser.add_argument(
            "--requester-group", dest="requester_groups", action="append", metavar="GROUP",
            help="a group whose members file; repeat, or comma-separate",
        )
        parser.add_argument("--required-approvals", type=int, default=1)
        parser.add_argument(
            "--allow-secret-shape-check",
            action="store_true",
            help="preflight may read the secret once to check its key names (values are never kept)",
        )

    def handle(self, *args, **options):
        try:
            account = account_register(
                actor=None,
                actor_label=_console_label(),
                account_id=options["account_id"],
                name=options["name"],
                is_datalake=options["datalake"],
                is_remote=options["remote"],
                provisioner_role_arn=options["provisioner_role_arn"],
                external_id=options["external_id"],
                external_id_required=not options["no_external_id"],
                default_region=options["default_region"],
                approvers=_usernames(options["approvers"]),
                requesters=_usernames(options["requesters"]),
                approver_groups=_usernames(options["approver_groups"]),
                requester_groups=_usernames(options["requester_groups"]),
                required_approvals=options["required_approvals"],
                allow_secret_shape_check=options["allow_secret_shape_check"],
            )
        except ValidationFailed as error:
            lines = [f"  {field}: {message}" for field, messages in error.errors.items() for message in messages]
            raise CommandError("The account was not registered:\n" + "\n".join(lines)) from None
        except DomainError as error:
            raise CommandError(error.message) from None
        roles = [label for flag, label in ((account.is_datalake, "DataLake"), (account.is_remote, "Remote")) if flag]
        self.stdout.write(self.style.SUCCESS(f"Registered {account} as {' and '.join(roles)}."))
