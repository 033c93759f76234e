"""The API's bodies: what clients send and what they get back.

Input serializers only parse types and sizes; every rule about what a valid
request or account is lives in the services (and ``requests_app.validation``),
so the API and the pages refuse the same things with the same words.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from provisioning.diagnoses import cdc_checklist, get_diagnosis
from provisioning.names import ENGINES, ROLE_NAME_MAX
from requests_app import permissions, visibility
from requests_app.actions import API_ACTION_NAMES
from requests_app.api.lifecycle_serializers import LifecycleFieldsMixin
from requests_app.models import AccessRequest, AuditEvent, AwsAccount, Decision, ProvisioningStep
from requests_app.validation import EXTERNAL_ID_MAX_LENGTH, JUSTIFICATION_MAX


def _max_length(model, field: str) -> int:
    return model._meta.get_field(field).max_length


USERNAME_MAX_LENGTH = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length
GROUP_NAME_MAX_LENGTH = Group._meta.get_field("name").max_length


def _names(what: str, max_length: int, **kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=max_length), max_length=500, help_text=what, **kwargs
    )


# --- shared pieces -----------------------------------------------------------


class EngineField(serializers.ChoiceField):
    """The engine name exactly as listed (a ChoiceField: no spaces trimmed, as the schema's enum says)."""

    def __init__(self, **kwargs):
        message = f"Must be one of {', '.join(ENGINES)} (got {{input!r}})."
        super().__init__(choices=sorted(ENGINES), error_messages={"invalid_choice": message}, **kwargs)


class EndpointTypeField(serializers.ChoiceField):
    """``source`` or ``target``, exactly."""

    def __init__(self, **kwargs):
        message = "Must be source or target (got {input!r})."
        super().__init__(choices=AccessRequest.EndpointType.choices, error_messages={"invalid_choice": message}, **kwargs)


# The schema states these patterns; the fields apply them to the text as sent
# (no trimming), so what the schema forbids is refused and what it allows is
# what the services accept.
ACCOUNT_ID_PATTERN = r"^[0-9]{12}$"
ENDPOINT_IDENTIFIER_PATTERN = r"^[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*$"
# Blank is allowed besides the pattern where the field allows it (the schema
# says "oneOf" the pattern or empty, so the pattern itself must not match "").
ROLE_NAME_PATTERN = r"^[A-Za-z0-9_+=,.@-]+$"
REGION_PATTERN = r"^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$"
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_+=,.@:/-]{2,1224}$"


def _pattern_field(pattern: str, message: str, **kwargs) -> serializers.RegexField:
    return serializers.RegexField(pattern, trim_whitespace=False, error_messages={"invalid": message}, **kwargs)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in plain words.")
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. `not_found`, `invalid_transition`.")


class PlanChangedSerializer(ErrorSerializer):
    current_plan_hash = serializers.CharField(
        required=False, help_text="With `code` `plan_changed`: the request's plan now; review it and decide again."
    )


class ValidationErrorSerializer(ErrorSerializer):
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per field name (`field.0.sub` for nested values; `non_field_errors` for the whole body).",
    )


class DiagnosisSerializer(serializers.Serializer):
    code = serializers.CharField()
    title = serializers.CharField()
    remediation = serializers.CharField(help_text="What a person can do about it.")


def _diagnosis(code: str) -> dict | None:
    # Rows store only the code; the words come from the engine's table, so they
    # can improve without touching stored rows.
    diagnosis = get_diagnosis(code or None)
    return diagnosis.to_dict() if diagnosis is not None else None


# --- accounts ----------------------------------------------------------------


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


# --- requests ----------------------------------------------------------------


class RequestSubmitSerializer(serializers.Serializer):
    datalake_account = _pattern_field(
        ACCOUNT_ID_PATTERN,
        "Must be a 12-digit AWS account id.",
        help_text="The 12-digit id of the registered DataLake account DMS runs in.",
    )
    secret_arn = serializers.CharField(
        max_length=_max_length(AccessRequest, "secret_arn"),
        help_text="Full ARN of the secret in a registered Remote account; it gives the Remote account and region.",
    )
    kms_key_arn = serializers.CharField(
        max_length=_max_length(AccessRequest, "kms_key_arn"),
        required=False,
        default="",
        allow_blank=True,
        help_text="The secret's customer-managed KMS key; discovered from the secret when left out.",
    )
    engine = EngineField(help_text="The DMS engine name.")
    endpoint_identifier = _pattern_field(
        ENDPOINT_IDENTIFIER_PATTERN,
        'Must start with a letter and use only letters, digits and hyphens, with no "--" and no trailing hyphen.',
        max_length=_max_length(AccessRequest, "endpoint_identifier"),
        help_text='The DMS endpoint identifier: starts with a letter; letters, digits and hyphens; no "--", no trailing hyphen.',
    )
    endpoint_type = EndpointTypeField(required=False, default="source")
    database_name = serializers.CharField(
        max_length=_max_length(AccessRequest, "database_name"), required=False, default="", allow_blank=True
    )
    role_name = _pattern_field(
        ROLE_NAME_PATTERN,
        "Must use only ASCII letters, digits and _+=,.@-.",
        max_length=ROLE_NAME_MAX,
        required=False,
        default="",
        allow_blank=True,
        help_text="Name of the IAM role DMS assumes (at most 64 characters); derived from the endpoint identifier when left out.",
    )
    replication_instance_arn = serializers.CharField(
        max_length=_max_length(AccessRequest, "replication_instance_arn"),
        required=False,
        default="",
        allow_blank=True,
        help_text="A replication instance in the DataLake account; when given, verify runs a DMS connection test.",
    )
    justification = serializers.CharField(max_length=JUSTIFICATION_MAX, help_text="Why DMS needs this secret.")
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="When the grant is revoked automatically."
    )


class DecisionSerializer(serializers.ModelSerializer):
    approver = serializers.SlugRelatedField(slug_field="username", read_only=True)
    counts = serializers.SerializerMethodField(
        help_text="Whether this decision was made on the request's current plan (earlier plans no longer count)."
    )

    class Meta:
        model = Decision
        fields = ["approver", "outcome", "comment", "plan_hash", "counts", "created_at"]
        read_only_fields = fields

    def get_counts(self, decision: Decision) -> bool:
        request = decision.request
        return decision.plan_hash == request.plan_hash and decision.approval_round == request.approval_round


class StepSerializer(serializers.ModelSerializer):
    before = serializers.SerializerMethodField(
        help_text="AWS state the step read before writing; null for a Remote step unless you approve for the "
        "Remote account or administer the portal."
    )
    after = serializers.SerializerMethodField(help_text="AWS state after the step; for Remote steps, as `before`.")
    error = serializers.SerializerMethodField()
    targets = serializers.ListField(
        child=serializers.DictField(),
        read_only=True,
        help_text="Every target this step wrote, over all its runs: arn, sid and the statement or document written.",
    )
    aws_request_ids = serializers.ListField(child=serializers.CharField(), read_only=True)
    diagnosis_detail = serializers.SerializerMethodField()

    class Meta:
        model = ProvisioningStep
        fields = [
            "phase",
            "name",
            "position",
            "status",
            "attempts",
            "started_at",
            "finished_at",
            "error",
            "diagnosis",
            "diagnosis_detail",
            "aws_request_ids",
            "before",
            "after",
            "targets",
        ]
        read_only_fields = fields

    @extend_schema_field(DiagnosisSerializer(allow_null=True))
    def get_diagnosis_detail(self, step: ProvisioningStep) -> dict | None:
        return _diagnosis(step.diagnosis)

    def _documents(self, step: ProvisioningStep):
        return visibility.step_documents_for(self.context["request"].user, self.context["access_request"], step)

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_before(self, step: ProvisioningStep):
        return self._documents(step)[0]

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_after(self, step: ProvisioningStep):
        return self._documents(step)[1]

    def get_error(self, step: ProvisioningStep) -> str:
        return self._documents(step)[2]


class PreflightCheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True)
    diagnosis = serializers.CharField(allow_null=True, required=False)
    remediation = serializers.CharField(allow_blank=True, required=False, help_text="What to do when the check failed.")


class PreflightSerializer(serializers.Serializer):
    ok = serializers.BooleanField(required=False)
    checks = PreflightCheckSerializer(many=True, required=False)
    diagnosis = serializers.CharField(allow_null=True, required=False)
    kms_key_arn = serializers.CharField(
        allow_null=True,
        required=False,
        help_text="The secret's key as resolved; null for a requester until the request is approved (unless they named it).",
    )
    secret_keys = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        required=False,
        help_text="Key NAMES found in the secret when the shape check ran (values are never read out); "
        "only for the Remote account's approvers and administrators.",
    )


class RequestSummarySerializer(serializers.ModelSerializer):
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    datalake_account = serializers.SlugRelatedField(slug_field="account_id", read_only=True)
    remote_account = serializers.SlugRelatedField(slug_field="account_id", read_only=True)
    approval_reminders = serializers.IntegerField(
        read_only=True, help_text="How many times the approvers were reminded while it waited for them."
    )
    escalated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When it was escalated for waiting too long (null: not escalated)."
    )
    escalated_to = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text='Who it was escalated to ("group <name>" or a username), as the account listed them then.',
    )

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "state",
            "requester",
            "datalake_account",
            "remote_account",
            "region",
            "secret_arn",
            "engine",
            "endpoint_identifier",
            "endpoint_type",
            "role_name",
            "plan_hash",
            "preflight_status",
            "diagnosis",
            "expires_at",
            "approval_reminders",
            "escalated_at",
            "escalated_to",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @classmethod
    def columns(cls) -> list[str]:
        """The columns a list of summaries reads (``QuerySet.only``): its fields,
        and of each related row it names only the named column; not the plan,
        the preflight report, or the accounts' encrypted external ids."""
        named = {
            name: f"{name}__{field.slug_field}"
            for name, field in cls._declared_fields.items()
            if isinstance(field, serializers.SlugRelatedField)
        }
        return [named.get(name, name) for name in cls.Meta.fields]


class RequestDetailSerializer(LifecycleFieldsMixin, RequestSummarySerializer):
    decisions = DecisionSerializer(many=True, read_only=True)
    steps = serializers.SerializerMethodField()
    preflight = serializers.SerializerMethodField(
        help_text="Each check passed or failed with its remediation. What preflight read in the Remote account "
        "(messages, the secret's key, its key names) only for that account's approvers and administrators."
    )
    resolved_kms_key_arn = serializers.SerializerMethodField(
        help_text="The secret's key as preflight resolved it; empty for a requester until the request is approved."
    )
    diagnosis_detail = serializers.SerializerMethodField()
    cdc_checklist = serializers.SerializerMethodField(
        help_text="What the database itself needs for change data capture, for when the endpoint test passes "
        "but replication fails."
    )
    allowed_actions = serializers.SerializerMethodField(
        help_text="What the caller may do with this request now (each is a POST to `.../<action>/`)."
    )

    class Meta(RequestSummarySerializer.Meta):
        fields = RequestSummarySerializer.Meta.fields + [
            "kms_key_arn",
            "resolved_kms_key_arn",
            "database_name",
            "replication_instance_arn",
            "justification",
            "role_arn",
            "endpoint_arn",
            "decided_at",
            "completed_at",
            "preflight",
            "diagnosis_detail",
            "cdc_checklist",
            "decisions",
            "steps",
            "allowed_actions",
            "drift",
            "drift_checked_at",
            "pending_extension",
            "pending_repair",
            "lifecycle_actions",
        ]
        read_only_fields = fields

    @extend_schema_field(PreflightSerializer(allow_null=True))
    def get_preflight(self, request: AccessRequest):
        # An empty report means preflight has not run (yet): say so with null.
        return visibility.preflight_for(self.context["request"].user, request)

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, request: AccessRequest):
        context = {**self.context, "access_request": request}
        return StepSerializer(request.steps.all(), many=True, context=context).data

    def get_resolved_kms_key_arn(self, request: AccessRequest) -> str:
        user = self.context["request"].user
        return request.resolved_kms_key_arn if permissions.can_see_resolved_key(user, request) else ""

    @extend_schema_field(DiagnosisSerializer(allow_null=True))
    def get_diagnosis_detail(self, request: AccessRequest) -> dict | None:
        return _diagnosis(request.diagnosis)

    def get_cdc_checklist(self, request: AccessRequest) -> list[str]:
        return cdc_checklist(request.engine)

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=API_ACTION_NAMES)))
    def get_allowed_actions(self, request: AccessRequest) -> list[str]:
        user = self.context["request"].user
        return sorted(permissions.allowed_actions(user, request))


class PlanSerializer(serializers.Serializer):
    plan_hash = serializers.CharField(help_text="SHA-256 of the canonical plan; approvals are bound to it.")
    role_trust_policy = serializers.JSONField(allow_null=True, help_text="Trust policy of the DMS role (DataLake).")
    role_inline_policy = serializers.JSONField(
        allow_null=True, help_text="The DMS role's inline policy: read the secret, decrypt with its key."
    )
    secret_policy_statement = serializers.JSONField(
        allow_null=True, help_text="The statement merged into the secret's resource policy (Remote)."
    )
    key_policy_statement = serializers.JSONField(
        allow_null=True, help_text="The statement merged into the KMS key policy (Remote)."
    )
    endpoint_settings = serializers.JSONField(
        allow_null=True, help_text="The CreateEndpoint arguments (no clear-text credentials)."
    )


# --- audit -------------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label", read_only=True, help_text="Username, or `worker`.")
    request = serializers.IntegerField(source="request_id", read_only=True, allow_null=True)
    account = serializers.SlugRelatedField(slug_field="account_id", read_only=True, allow_null=True)
    details = serializers.SerializerMethodField(
        help_text="What the event records; the documents a Remote step read and wrote only for that account's "
        "approvers and administrators."
    )

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "source_ip",
            "action",
            "request",
            "account",
            "target_arn",
            "details",
            "prev_hash",
            "hash",
            "key_id",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.JSONField())
    def get_details(self, event: AuditEvent):
        accounts = self.context.get("document_accounts", frozenset())
        return visibility.audit_details_for(self.context["request"].user, event, remote_account_ids=accounts)
