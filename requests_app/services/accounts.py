"""Registering the AWS accounts the portal works in."""
from __future__ import annotations

from django.db import IntegrityError, transaction

from requests_app import permissions
from requests_app.audit import record_event
from requests_app.errors import NotAllowed, ValidationFailed
from requests_app.models import AwsAccount
from requests_app.validation import validate_account_input


def account_register(
    *,
    actor,
    account_id: str,
    name: str,
    is_datalake: bool,
    is_remote: bool,
    provisioner_role_arn: str,
    external_id: str = "",
    default_region: str = "eu-west-1",
    approvers=(),
    requesters=(),
    required_approvals: int = 1,
    allow_secret_shape_check: bool = False,
    source_ip: str | None = None,
    actor_label: str | None = None,
) -> AwsAccount:
    """Register an account with its provisioner role, approvers and requesters
    (given as usernames).

    ``actor`` is the staff user doing it; None means an operator at the
    server's console (the ``register_account`` command), named by ``actor_label``.
    """
    if actor is not None and not permissions.can_register_account(actor):
        raise NotAllowed("Only administrators may register accounts.")
    cleaned = validate_account_input(
        account_id=account_id, name=name, is_datalake=is_datalake, is_remote=is_remote,
        provisioner_role_arn=provisioner_role_arn, external_id=external_id, default_region=default_region,
        approvers=approvers, requesters=requesters, required_approvals=required_approvals,
    )
    approver_users = cleaned.pop("approvers")
    requester_users = cleaned.pop("requesters")
    try:
        with transaction.atomic():
            account = AwsAccount.objects.create(allow_secret_shape_check=bool(allow_secret_shape_check), **cleaned)
            account.approvers.set(approver_users)
            account.requesters.set(requester_users)
            record_event(
                action="account.registered",
                actor=actor,
                actor_label=actor_label if actor is None else None,
                source_ip=source_ip,
                account=account,
                target_arn=account.provisioner_role_arn,
                details={
                    **cleaned,
                    "allow_secret_shape_check": account.allow_secret_shape_check,
                    "approvers": [user.get_username() for user in approver_users],
                    "requesters": [user.get_username() for user in requester_users],
                },
            )
    except IntegrityError:
        raise ValidationFailed({"account_id": [f"Account {cleaned['account_id']} is already registered."]}) from None
    return account
