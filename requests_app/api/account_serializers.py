"""The API's bodies for the accounts registry: what an administrator sends
to register an account or change who decides for it, and what anyone reads.

Like every input serializer, these only parse types and sizes; the rules are
the services' (``requests_app.validation``).
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from requests_app.grant_input import ACCOUNT_ID_PATTERN
from requests_app.models import AwsAccount
from requests_app.validation import EXTERNAL_ID_MAX_LENGTH


def _max_length(model, field: str) -> int:
    return model._meta.get_field(field).max_length


USERNAME_MAX_LENGTH = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length
GROUP_NAME_MAX_LENGTH = Group._meta.get_field("name").max_length


def _names(what: str, max_length: int, **kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=max_length), max_length=500, help_text=what, **kwargs
    )


# The schema states these patterns; the fields apply them to the text as sent
# (no trimming), so what the schema forbids is refused and what it allows is
# what the services accept.
REGION_PATTERN = r"^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$"
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_+=,.@:/-]{2,1224}$"


def _pattern_field(pattern: str, message: str, **kwargs) -> serializers.RegexField:
    return serializers.RegexField(pattern, trim_whitespace=False, error_messages={"invalid": message}, **kwargs)


class AccountSerializer(serializers.ModelSerializer):
    approvers = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)
    requesters = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)
    approver_groups = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    requester_groups = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    escalation_groups = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    escalation_users = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)
    has_external_id = serializers.SerializerMethodField(
        help_text="Whether the workers pass an ExternalId when they assume the provisioner role (the value is not shown)."
    )

    class Meta:
        model = AwsAccount
        fields = [
            "account_id",
            "name",
            "is_datalake",
            "is_remote",
            "provisioner_role_arn",
            "has_external_id",
            "default_region",
            "approvers",
            "requesters",
            "approver_groups",
            "requester_groups",
            "required_approvals",
            "approval_reminder_hours",
            "escalate_after_hours",
            "escalation_groups",
            "escalation_users",
            "expire_pending_after_days",
            "allow_secret_shape_check",
            "slack_channel",
            "created_at",
        ]
        read_only_fields = fields

    def get_has_external_id(self, account: AwsAccount) -> bool:
        return bool(account.external_id)


def _slack_channel_field() -> serializers.RegexField:
    return _pattern_field(
        r"^([CG][A-Z0-9]{8,20})?$",
        "Must be a Slack channel id: C or G and 8 to 20 capital letters or digits (not a #name).",
        required=False,
        allow_blank=True,
        help_text="The Slack channel id where the portal's Slack app asks this account's approvers; empty for none.",
    )


class AccountRegisterSerializer(serializers.Serializer):
    account_id = _pattern_field(
        ACCOUNT_ID_PATTERN, "Must be a 12-digit AWS account id.", help_text="The 12-digit AWS account id."
    )
    name = serializers.CharField(max_length=_max_length(AwsAccount, "name"))
    is_datalake = serializers.BooleanField(default=False, help_text="DMS runs here; requesters file for it.")
    is_remote = serializers.BooleanField(default=False, help_text="Secrets live here; approvers decide for it.")
    provisioner_role_arn = serializers.CharField(
        max_length=_max_length(AwsAccount, "provisioner_role_arn"),
        help_text="A role in this account that the workers assume; its ARN must name this account.",
    )
    external_id = _pattern_field(
        EXTERNAL_ID_PATTERN,
        "Must be 2 to 1224 characters of letters, digits and +=,.@:/-_.",
        max_length=EXTERNAL_ID_MAX_LENGTH,
        required=False,
        default="",
        allow_blank=True,
        write_only=True,
        help_text=(
            "The ExternalId the provisioner role's trust policy requires. Stored encrypted; never shown, "
            "logged or audited (answers say only `has_external_id`). Required for a Remote account unless "
            "`external_id_required` is false."
        ),
    )
    external_id_required = serializers.BooleanField(
        default=True,
        help_text="Set to false to register a Remote account without an external id (not recommended).",
    )
    default_region = _pattern_field(
        REGION_PATTERN,
        "Must be an AWS region name like eu-west-1 (lower case, ends in a number).",
        max_length=_max_length(AwsAccount, "default_region"),
        required=False,
        default="eu-west-1",
    )
    approvers = serializers.ListField(
        child=serializers.CharField(max_length=USERNAME_MAX_LENGTH),
        required=False,
        default=list,
        max_length=500,
        help_text="Usernames of the people who approve requests for this (Remote) account.",
    )
    requesters = serializers.ListField(
        child=serializers.CharField(max_length=USERNAME_MAX_LENGTH),
        required=False,
        default=list,
        max_length=500,
        help_text="Usernames of the people who may file requests for this (DataLake) account.",
    )
    approver_groups = _names(
        "Names of groups whose members approve for this (Remote) account.", GROUP_NAME_MAX_LENGTH,
        required=False, default=list,
    )
    requester_groups = _names(
        "Names of groups whose members may file for this (DataLake) account.", GROUP_NAME_MAX_LENGTH,
        required=False, default=list,
    )
    required_approvals = serializers.IntegerField(
        min_value=1, max_value=32767, required=False, default=1, help_text="Distinct approvals a request needs."
    )
    allow_secret_shape_check = serializers.BooleanField(
        default=False,
        help_text="Preflight may read the secret once to check its key names (values are never kept).",
    )
    slack_channel = _slack_channel_field()


class AccountMembersSerializer(serializers.Serializer):
    """A change of who decides for an account: each field given replaces the current one."""

    approvers = serializers.ListField(
        child=serializers.CharField(max_length=USERNAME_MAX_LENGTH),
        required=False,
        max_length=500,
        help_text="Usernames: the account's approvers from now on (replaces the list).",
    )
    requesters = serializers.ListField(
        child=serializers.CharField(max_length=USERNAME_MAX_LENGTH),
        required=False,
        max_length=500,
        help_text="Usernames: the account's requesters from now on (replaces the list).",
    )
    approver_groups = _names(
        "Group names: the account's approver groups from now on (replaces the list).", GROUP_NAME_MAX_LENGTH,
        required=False,
    )
    requester_groups = _names(
        "Group names: the account's requester groups from now on (replaces the list).", GROUP_NAME_MAX_LENGTH,
        required=False,
    )
    required_approvals = serializers.IntegerField(
        min_value=1, max_value=32767, required=False, help_text="Distinct approvals a request needs."
    )
    slack_channel = _slack_channel_field()
    approval_reminder_hours = serializers.IntegerField(
        min_value=0, max_value=32767, required=False,
        help_text="Remind the approvers every this many hours a request waits (0: never).",
    )
    escalate_after_hours = serializers.IntegerField(
        min_value=0, max_value=32767, required=False,
        help_text="Escalate a request still pending after this many hours (0: never).",
    )
    escalation_groups = _names(
        "Group names a pending request is escalated to (told; they gain no right to approve).",
        GROUP_NAME_MAX_LENGTH, required=False,
    )
    escalation_users = _names(
        "Usernames a pending request is escalated to (told; they gain no right to approve).",
        USERNAME_MAX_LENGTH, required=False,
    )
    expire_pending_after_days = serializers.IntegerField(
        min_value=1, max_value=32767, required=False,
        help_text="A request still pending approval after this many days expires.",
    )
