"""Registering the AWS accounts the portal works in, and changing who decides for them.

The external id is written here and read only by the workers when they
assume the provisioner role: no audit event, answer or notification ever
holds it, only whether one is set.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from requests_app import notifications, permissions
from requests_app.audit import record_event
from requests_app.errors import NotAllowed, NotFoundForUser, ValidationFailed
from requests_app.models import AwsAccount, slack_channel_validator
from requests_app.validation import (
    EXTERNAL_ID_RE,
    NO_EXTERNAL_ID,
    validate_account_input,
    validate_account_members,
    validate_waiting_rules,
)


def account_register(
    *,
    actor,
    account_id: str,
    name: str,
    is_datalake: bool,
    is_remote: bool,
    provisioner_role_arn: str,
    external_id: str = "",
    external_id_required: bool = True,
    default_region: str = "eu-west-1",
    approvers=(),
    requesters=(),
    required_approvals: int = 1,
    approver_groups=(),
    requester_groups=(),
    allow_secret_shape_check: bool = False,
    slack_channel: str = "",
    source_ip: str | None = None,
    actor_label: str | None = None,
) -> AwsAccount:
    """Register an account with its provisioner role, approvers and requesters
    (given as usernames), approver and requester groups (group names), and optionally the
    Slack channel its approvers are asked in.

    ``actor`` is the portal administrator doing it; None means an operator at
    the server's console (a management command), named by ``actor_label``.
    A Remote account needs an external id unless ``external_id_required`` is False.
    """
    if actor is not None and not permissions.can_register_account(actor):
        raise NotAllowed("Only portal administrators may register accounts.")
    cleaned = validate_account_input(
        account_id=account_id, name=name, is_datalake=is_datalake, is_remote=is_remote,
        provisioner_role_arn=provisioner_role_arn, external_id=external_id,
        external_id_required=external_id_required, default_region=default_region,
        approvers=approvers, requesters=requesters, required_approvals=required_approvals,
        approver_groups=approver_groups, requester_groups=requester_groups,
    )
    approver_users = cleaned.pop("approvers")
    requester_users = cleaned.pop("requesters")
    slack_channel = (slack_channel or "").strip()
    if slack_channel:
        try:
            slack_channel_validator(slack_channel)
        except ValidationError as error:
            raise ValidationFailed({"slack_channel": list(error.messages)}) from None
    group_rows = {"approver_groups": cleaned.pop("approver_groups"), "requester_groups": cleaned.pop("requester_groups")}
    try:
        with transaction.atomic():
            account = AwsAccount.objects.create(
                allow_secret_shape_check=bool(allow_secret_shape_check), slack_channel=slack_channel, **cleaned
            )
            account.approvers.set(approver_users)
            account.requesters.set(requester_users)
            account.approver_groups.set(group_rows["approver_groups"])
            account.requester_groups.set(group_rows["requester_groups"])
            details = {key: value for key, value in cleaned.items() if key != "external_id"}
            record_event(
                action="account.registered",
                actor=actor,
                actor_label=actor_label if actor is None else None,
                source_ip=source_ip,
                account=account,
                target_arn=account.provisioner_role_arn,
                details={
                    **details,
                    "external_id_set": bool(account.external_id),
                    "allow_secret_shape_check": account.allow_secret_shape_check,
                    "slack_channel": account.slack_channel,
                    "approvers": [user.get_username() for user in approver_users],
                    "requesters": [user.get_username() for user in requester_users],
                    **{part: [group.name for group in rows] for part, rows in group_rows.items()},
                },
            )
    except IntegrityError:
        raise ValidationFailed({"account_id": [f"Account {cleaned['account_id']} is already registered."]}) from None
    return account


def _members(account: AwsAccount) -> dict:
    return {
        "approvers": sorted(user.get_username() for user in account.approvers.all()),
        "requesters": sorted(user.get_username() for user in account.requesters.all()),
        "approver_groups": sorted(group.name for group in account.approver_groups.all()),
        "requester_groups": sorted(group.name for group in account.requester_groups.all()),
        "required_approvals": account.required_approvals,
    }


WAITING_FIELDS = ("approval_reminder_hours", "escalate_after_hours", "expire_pending_after_days")


def _waiting_rules(account: AwsAccount) -> dict:
    return {
        "approval_reminder_hours": account.approval_reminder_hours,
        "escalate_after_hours": account.escalate_after_hours,
        "escalation_groups": sorted(group.name for group in account.escalation_groups.all()),
        "escalation_users": sorted(user.get_username() for user in account.escalation_users.all()),
        "expire_pending_after_days": account.expire_pending_after_days,
    }


def _locked_account(account_id: str) -> AwsAccount:
    try:
        return AwsAccount.objects.select_for_update().get(account_id=str(account_id))
    except (AwsAccount.DoesNotExist, ValueError):
        raise NotFoundForUser(f"No account {account_id} is registered.") from None


def account_members_set(
    *,
    actor,
    account_id: str,
    approvers=None,
    requesters=None,
    required_approvals: int | None = None,
    approver_groups=None,
    requester_groups=None,
    approval_reminder_hours=None,
    escalate_after_hours=None,
    escalation_groups=None,
    escalation_users=None,
    expire_pending_after_days=None,
    source_ip: str | None = None,
    actor_label: str | None = None,
) -> AwsAccount:
    """Replace an account's approvers and/or requesters (usernames), approver
    and/or requester groups (group names), its required approvals and/or how
    long its requests may wait (remind the approvers every
    ``approval_reminder_hours``, escalate to ``escalation_groups`` and
    ``escalation_users`` after ``escalate_after_hours`` -- 0 switches either
    off -- and expire after ``expire_pending_after_days``); None leaves that
    part as it is.

    The one way these change, from the admin, the API and the command line:
    audited with before and after, and the account's approvers (those before
    the change and those after it) are told once the change is committed.
    ``actor`` None is an operator at the console, named by ``actor_label``.
    """
    if actor is not None and not permissions.can_change_account_members(actor):
        raise NotAllowed("Only portal administrators may change an account's approvers, requesters and rules.")
    with transaction.atomic():
        account = _locked_account(account_id)
        before = {**_members(account), **_waiting_rules(account)}
        cleaned = validate_account_members(
            is_datalake=account.is_datalake,
            approvers=before["approvers"] if approvers is None else approvers,
            requesters=before["requesters"] if requesters is None else requesters,
            required_approvals=before["required_approvals"] if required_approvals is None else required_approvals,
            approver_groups=before["approver_groups"] if approver_groups is None else approver_groups,
            requester_groups=before["requester_groups"] if requester_groups is None else requester_groups,
        )
        after = {
            "approvers": sorted(user.get_username() for user in cleaned["approvers"]),
            "requesters": sorted(user.get_username() for user in cleaned["requesters"]),
            "approver_groups": sorted(group.name for group in cleaned["approver_groups"]),
            "requester_groups": sorted(group.name for group in cleaned["requester_groups"]),
            "required_approvals": cleaned["required_approvals"],
        }
        given = {
            "approval_reminder_hours": approval_reminder_hours,
            "escalate_after_hours": escalate_after_hours,
            "escalation_groups": escalation_groups,
            "escalation_users": escalation_users,
            "expire_pending_after_days": expire_pending_after_days,
        }
        rules = validate_waiting_rules(**{part: before[part] if value is None else value for part, value in given.items()})
        after.update({part: rules[part] for part in WAITING_FIELDS})
        after["escalation_groups"] = sorted(group.name for group in rules["escalation_groups"])
        after["escalation_users"] = sorted(user.get_username() for user in rules["escalation_users"])
        if after == before:
            return account
        account.approvers.set(cleaned["approvers"])
        account.requesters.set(cleaned["requesters"])
        account.approver_groups.set(cleaned["approver_groups"])
        account.requester_groups.set(cleaned["requester_groups"])
        account.escalation_groups.set(rules["escalation_groups"])
        account.escalation_users.set(rules["escalation_users"])
        account.required_approvals = after["required_approvals"]
        for field in WAITING_FIELDS:
            setattr(account, field, after[field])
        account.save(update_fields=["required_approvals", *WAITING_FIELDS, "updated_at"])
        event = record_event(
            action="account.members_changed",
            actor=actor,
            actor_label=actor_label if actor is None else None,
            source_ip=source_ip,
            account=account,
            target_arn=account.provisioner_role_arn,
            details={"before": before, "after": after},
        )
        changed_by = event.actor_label
        transaction.on_commit(
            lambda: notifications.notify_account_members_changed(
                account, before=before, after=after, changed_by=changed_by
            )
        )
    return account


def account_external_id_set(
    *,
    actor,
    account_id: str,
    external_id: str,
    external_id_required: bool = True,
    source_ip: str | None = None,
    actor_label: str | None = None,
) -> AwsAccount:
    """Replace (or, with "" and ``external_id_required=False``, remove) an
    account's external id. The audit event says that it changed, never the value."""
    if actor is not None and not permissions.can_register_account(actor):
        raise NotAllowed("Only portal administrators may change an account's external id.")
    external_id = (external_id or "").strip()
    if external_id and not EXTERNAL_ID_RE.fullmatch(external_id):
        raise ValidationFailed({"external_id": ["Must be 2 to 1224 characters of letters, digits and +=,.@:/-_."]})
    with transaction.atomic():
        account = _locked_account(account_id)
        if not external_id and account.is_remote and external_id_required:
            raise ValidationFailed({"external_id": [NO_EXTERNAL_ID]})
        was_set = bool(account.external_id)
        account.external_id = external_id
        account.save(update_fields=["external_id", "updated_at"])
        record_event(
            action="account.external_id_changed",
            actor=actor,
            actor_label=actor_label if actor is None else None,
            source_ip=source_ip,
            account=account,
            target_arn=account.provisioner_role_arn,
            details={"external_id_set_before": was_set, "external_id_set": bool(external_id)},
        )
    return account
