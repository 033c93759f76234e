"""Field-level validation of a new request, shared by the API, the form and
the submit service so all three give the same messages.

A new request's fields and their own rules are declared in
``requests_app.grant_input`` (syntax rules come from the engine,
``provisioning.arns`` and ``provisioning.names``); this module runs them and
adds what only the portal knows: which accounts are registered, how the ARNs
must agree with them and with each other, and which names live requests
already hold.
"""
from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from provisioning import arns, names
from provisioning.errors import InvalidInput
from requests_app.errors import ValidationFailed
from requests_app.grant_input import FIELD_NAMES, SUBMIT_INPUT, submit_arguments
from requests_app.models import LIVE_STATES, AccessRequest, AwsAccount

# A decision's comment (approve, reject, an extension's): one limit and one
# message for the pages, the API and the services.
COMMENT_MAX = 2000
COMMENT_TOO_LONG = f"A comment may be at most {COMMENT_MAX} characters."

# A new request's field names as the API, the form and the messages spell them.
REQUEST_FIELDS = FIELD_NAMES


def clean_comment(comment: str | None) -> str:
    """A decision's comment, stripped; refused (never cut short) when it is too long."""
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX:
        raise ValidationFailed({"comment": [COMMENT_TOO_LONG]})
    return comment


def rule_message(error: InvalidInput) -> str:
    """The engine's rule as a sentence for a person ("Must be ...")."""
    rule = error.rule.strip()
    return rule[:1].upper() + rule[1:] + ("" if rule.endswith(".") else ".")


class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.by_field.setdefault(field, []).append(message)

    def check(self, field: str, validate, *args, **kwargs):
        """Run an engine validator; on InvalidInput record its rule under ``field``."""
        try:
            return validate(*args, field=field, **kwargs)
        except InvalidInput as error:
            self.add(field, rule_message(error))
            return None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _datalake_account(errors: _Errors, account_id: str | None) -> AwsAccount | None:
    if account_id is None:
        return None
    account = AwsAccount.objects.filter(account_id=account_id).first()
    if account is None:
        errors.add("datalake_account", f"No account {account_id} is registered.")
    elif not account.is_datalake:
        errors.add("datalake_account", f"Account {account_id} is not registered as a DataLake account.")
        return None
    return account


def _remote_account(errors: _Errors, secret: arns.Arn) -> AwsAccount | None:
    account = AwsAccount.objects.filter(account_id=secret.account, is_remote=True).first()
    if account is None:
        errors.add(
            "secret_arn",
            f"The secret's account {secret.account} is not a registered Remote account.",
        )
    return account


def _same_place(errors: _Errors, field: str, arn: arns.Arn, *, secret: arns.Arn, account_id: str, side: str) -> None:
    if arn.partition != secret.partition:
        errors.add(field, f"Must be in partition {secret.partition}, like the secret (it is in {arn.partition}).")
    if arn.account != account_id:
        errors.add(field, f"Must be in the {side} account {account_id} (it is in {arn.account}).")
    if arn.region != secret.region:
        errors.add(field, f"Must be in the secret's region {secret.region} (it is in {arn.region}).")


def _taken_names(
    errors: _Errors,
    *,
    account: AwsAccount,
    region: str,
    role_name: str | None,
    role_name_derived: bool,
    endpoint_identifier: str | None,
) -> None:
    live = AccessRequest.objects.filter(datalake_account=account, state__in=LIVE_STATES)
    # IAM role names are unique regardless of case, and so are DMS endpoint identifiers.
    if role_name and live.filter(role_name__iexact=role_name).exists():
        if role_name_derived:
            errors.add(
                "role_name",
                f"The role name derived from the endpoint identifier ({role_name}) is already held by another "
                "live request for this DataLake account; choose a role name.",
            )
        else:
            errors.add("role_name", f"{role_name} is already held by another live request for this DataLake account.")
    if endpoint_identifier and region and live.filter(
        region=region, endpoint_identifier__iexact=endpoint_identifier
    ).exists():
        errors.add(
            "endpoint_identifier",
            f"{endpoint_identifier} is already held by another live request for this DataLake account in {region}.",
        )


def validate_request_input(**arguments: Any) -> dict[str, Any]:
    """Check every field of a new request; return the cleaned values.

    Takes the submit service's keywords (``grant_input.SUBMIT_INPUT``). Raises
    ValidationFailed with every broken field at once. The cleaned dict has
    the request's model fields, with ``datalake_account`` and
    ``remote_account`` as rows and ``region`` (the secret ARN's region).
    A blank role name is derived from the endpoint identifier.
    """
    arguments = submit_arguments(arguments)
    given = {field.name: field.given(arguments[field.argument]) for field in SUBMIT_INPUT}
    errors = _Errors()
    # Each field's own rule; a field left blank that need not be given keeps its default.
    checked = {
        field.name: errors.check(field.name, field.check, given[field.name])
        for field in SUBMIT_INPUT
        if field.required or given[field.name] != field.default
    }
    datalake = _datalake_account(errors, checked.get("datalake_account"))
    grant = _grant(errors, given, checked, datalake=datalake)
    if errors.by_field:
        raise ValidationFailed(errors.by_field)
    return {
        **{name: value.raw if isinstance(value, arns.Arn) else value for name, value in {**given, **checked}.items()},
        "datalake_account": datalake,
        **grant,
    }


def _grant(
    errors: _Errors, given: dict[str, Any], checked: dict[str, Any], *, datalake: AwsAccount | None
) -> dict[str, Any]:
    """The rules across one grant's fields and the request's DataLake account;
    returns what they settle (the Remote account, the region, the role name)."""
    secret = checked.get("secret_arn")
    remote = region = None
    if secret is not None:
        region = errors.check("secret_arn", names.validate_region, secret.region, partition=secret.partition)
        remote = _remote_account(errors, secret)
        if (key := checked.get("kms_key_arn")) is not None:
            _same_place(errors, "kms_key_arn", key, secret=secret, account_id=secret.account, side="Remote")
        if (replication := checked.get("replication_instance_arn")) is not None and datalake is not None:
            _same_place(
                errors, "replication_instance_arn", replication,
                secret=secret, account_id=datalake.account_id, side="DataLake",
            )

    engine = checked.get("engine")
    if given["database_name"] and engine in names.MYSQL_FAMILY:
        errors.add("database_name", f"Must be left empty for {engine}: DMS refuses a database name for MySQL-family engines.")

    identifier = checked.get("endpoint_identifier")
    role_named = "role_name" in checked
    if role_named:
        role = checked["role_name"]
    else:
        role = names.derive_role_name(identifier) if identifier else None
    if datalake is not None:
        _taken_names(
            errors, account=datalake, region=region, role_name=role,
            role_name_derived=not role_named, endpoint_identifier=identifier,
        )
    return {"remote_account": remote, "region": region, "role_name": role}


EXTERNAL_ID_MAX_LENGTH = 1224
EXTERNAL_ID_RE = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
ACCOUNT_NAME_MAX = 100


def _users(errors: _Errors, field: str, usernames) -> list:
    wanted = []
    for name in usernames or ():
        name = _text(name)
        if name and name not in wanted:
            wanted.append(name)
    user_model = get_user_model()
    rows = user_model.objects.filter(**{f"{user_model.USERNAME_FIELD}__in": wanted}, is_active=True)
    found = {user.get_username(): user for user in rows}
    missing = [name for name in wanted if name not in found]
    if missing:
        errors.add(field, f"No active user named {', '.join(missing)}.")
    return [found[name] for name in wanted if name in found]


def _account_setup(
    errors: _Errors, *, account_id, is_datalake, is_remote, provisioner_role_arn, external_id, default_region
) -> tuple[str | None, arns.Arn | None, str | None]:
    # What the workers need to reach the account: checked on registration and in the admin alike.
    checked_id = errors.check("account_id", names.validate_account_id, _text(account_id))
    if not (is_datalake or is_remote):
        errors.add("is_datalake", "An account is a DataLake account, a Remote account, or both.")
    role = errors.check("provisioner_role_arn", arns.parse_role_arn, _text(provisioner_role_arn))
    if role is not None and checked_id and role.account != checked_id:
        errors.add("provisioner_role_arn", f"Must be a role in account {checked_id} itself (it is in {role.account}).")
    external_text = _text(external_id)
    if external_text and not EXTERNAL_ID_RE.fullmatch(external_text):
        errors.add("external_id", "Must be 2 to 1224 characters of letters, digits and +=,.@:/-_.")
    region = errors.check("default_region", names.validate_region, _text(default_region) or "eu-west-1")
    return checked_id, role, region


def account_setup_errors(
    *, account_id, is_datalake, is_remote, provisioner_role_arn, external_id="", default_region="eu-west-1"
) -> dict[str, list[str]]:
    """The field errors of how an account is reached (id, role, external id, region, kind)."""
    errors = _Errors()
    _account_setup(
        errors, account_id=account_id, is_datalake=is_datalake, is_remote=is_remote,
        provisioner_role_arn=provisioner_role_arn, external_id=external_id, default_region=default_region,
    )
    return errors.by_field


NO_EXTERNAL_ID = (
    "A Remote account needs the external id its provisioner role's trust policy requires (it keeps "
    "another party from making the portal act in this account). To register one without, say so "
    "explicitly: --no-external-id on the command line, \"external_id_required\": false in the API."
)


def _groups(errors: _Errors, field: str, names) -> list:
    wanted = []
    for name in names or ():
        name = _text(name)
        if name and name not in wanted:
            wanted.append(name)
    found = {group.name: group for group in Group.objects.filter(name__in=wanted)}
    missing = [name for name in wanted if name not in found]
    if missing:
        errors.add(field, f"No group named {', '.join(missing)}.")
    return [found[name] for name in wanted if name in found]


def _members(
    errors: _Errors, *, is_datalake, approvers, requesters, required_approvals, approver_groups=(), requester_groups=()
) -> dict[str, Any]:
    # Who approves and files for an account, and how many approvals it needs.
    approver_users = _users(errors, "approvers", approvers)
    requester_users = _users(errors, "requesters", requesters)
    approver_group_rows = _groups(errors, "approver_groups", approver_groups)
    requester_group_rows = _groups(errors, "requester_groups", requester_groups)
    if (requester_users or requester_group_rows) and not is_datalake:
        field = "requesters" if requester_users else "requester_groups"
        errors.add(field, "Requesters file for DataLake accounts; this account is not one.")
    try:
        required = int(required_approvals)
    except (TypeError, ValueError):
        errors.add("required_approvals", "Must be a whole number of at least 1.")
        required = None
    if required is not None:
        if required < 1:
            errors.add("required_approvals", "Must be at least 1.")
        elif required > 32767:
            errors.add("required_approvals", "Must be at most 32767.")
        # Groups fill from the identity provider at each login: who is in them
        # today says little about who approves tomorrow, so only a list of
        # people alone is checked against the quorum.
        elif approver_users and not approver_group_rows and required > len(approver_users):
            errors.add(
                "required_approvals",
                f"{required} approvals are required but only {len(approver_users)} approvers are listed: "
                "no request could ever be approved.",
            )
    return {
        "approvers": approver_users,
        "requesters": requester_users,
        "approver_groups": approver_group_rows,
        "requester_groups": requester_group_rows,
        "required_approvals": required,
    }



def _hours_or_off(errors: _Errors, field: str, value: Any) -> int | None:
    # 0 or None: off.
    if value in (None, "", 0, "0"):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        errors.add(field, "Must be a whole number of hours (0 for never).")
        return None
    if not 0 <= number <= 32767:
        errors.add(field, "Must be between 0 (never) and 32767 hours.")
        return None
    return number or None


def validate_waiting_rules(
    *, approval_reminder_hours: Any, escalate_after_hours: Any, escalation_groups, escalation_users,
    expire_pending_after_days: Any,
) -> dict[str, Any]:
    """Check how long a request of the account may wait: reminders, escalation
    (to groups and/or people), expiry. Returns them cleaned (rows for the groups
    and people). Raises ValidationFailed."""
    errors = _Errors()
    remind = _hours_or_off(errors, "approval_reminder_hours", approval_reminder_hours)
    escalate = _hours_or_off(errors, "escalate_after_hours", escalate_after_hours)
    groups = _groups(errors, "escalation_groups", escalation_groups)
    users = _users(errors, "escalation_users", escalation_users)
    if escalate and not (groups or users):
        errors.add("escalate_after_hours", "Name the groups or people a request is escalated to.")
    try:
        days = int(expire_pending_after_days)
    except (TypeError, ValueError):
        days = None
    if days is None or not 1 <= days <= 32767:
        errors.add("expire_pending_after_days", "Must be a whole number of days, at least 1.")
    if errors.by_field:
        raise ValidationFailed(errors.by_field)
    return {
        "approval_reminder_hours": remind,
        "escalate_after_hours": escalate,
        "escalation_groups": groups,
        "escalation_users": users,
        "expire_pending_after_days": days,
    }


def validate_account_members(
    *, is_datalake: bool, approvers, requesters, required_approvals: Any, approver_groups=(), requester_groups=()
) -> dict[str, Any]:
    """Check an account's new approvers, requesters (usernames), approver and
    requester groups (group names) and required approvals; return them cleaned
    (users and groups as rows). Raises ValidationFailed."""
    errors = _Errors()
    cleaned = _members(
        errors, is_datalake=is_datalake, approvers=approvers, requesters=requesters,
        required_approvals=required_approvals, approver_groups=approver_groups, requester_groups=requester_groups,
    )
    if errors.by_field:
        raise ValidationFailed(errors.by_field)
    return cleaned


def validate_account_input(
    *,
    account_id: Any,
    name: Any,
    is_datalake: bool,
    is_remote: bool,
    provisioner_role_arn: Any,
    external_id: Any = "",
    external_id_required: bool = True,
    default_region: Any = "eu-west-1",
    approvers=(),
    requesters=(),
    required_approvals: Any = 1,
    approver_groups=(),
    requester_groups=(),
) -> dict[str, Any]:
    """Check a new account's fields; return the cleaned values (approvers and
    requesters as user rows). Raises ValidationFailed with every broken field.

    A Remote account without an external id is refused unless
    ``external_id_required`` is False: the guard is opt-out, not opt-in."""
    errors = _Errors()
    name_text = _text(name)
    checked_id, role, region = _account_setup(
        errors, account_id=account_id, is_datalake=is_datalake, is_remote=is_remote,
        provisioner_role_arn=provisioner_role_arn, external_id=external_id, default_region=default_region,
    )
    if is_remote and external_id_required and not _text(external_id):
        errors.add("external_id", NO_EXTERNAL_ID)
    if checked_id and AwsAccount.objects.filter(account_id=checked_id).exists():
        errors.add("account_id", f"Account {checked_id} is already registered.")
    if not name_text:
        errors.add("name", "A name is required.")
    elif len(name_text) > ACCOUNT_NAME_MAX:
        errors.add("name", f"Must be at most {ACCOUNT_NAME_MAX} characters.")
    members = _members(
        errors, is_datalake=is_datalake, approvers=approvers, requesters=requesters,
        required_approvals=required_approvals, approver_groups=approver_groups, requester_groups=requester_groups,
    )
    if errors.by_field:
        raise ValidationFailed(errors.by_field)
    return {
        "account_id": checked_id,
        "name": name_text,
        "is_datalake": bool(is_datalake),
        "is_remote": bool(is_remote),
        "provisioner_role_arn": role.raw,
        "external_id": _text(external_id),
        "default_region": region,
        **members,
    }
