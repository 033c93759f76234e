"""The API's bodies: what clients send and what they get back.

Input serializers only parse types and sizes; every rule about what a valid
request or account is lives in the services (and ``requests_app.validation``),
so the API and the pages refuse the same things with the same words.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from provisioning.diagnoses import cdc_checklist, get_diagnosis
from provisioning.names import ENGINES
from requests_app import permissions
from requests_app.api.lifecycle_serializers import LifecycleFieldsMixin
from requests_app.models import AccessRequest, AuditEvent, AwsAccount, Decision, ProvisioningStep


def _max_length(model, field: str) -> int:
    return model._meta.get_field(field).max_length


USERNAME_MAX_LENGTH = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length


# --- shared pieces -----------------------------------------------------------


@extend_schema_field(serializers.ChoiceField(choices=sorted(ENGINES)))
class EngineField(serializers.CharField):
    """The engine name; the services check it against the engine list."""


@extend_schema_field(serializers.ChoiceField(choices=AccessRequest.EndpointType.choices))
class EndpointTypeField(serializers.CharField):
    """``source`` or ``target``; the services check it."""


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in plain words.")
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. `not_found`, `invalid_transition`.")


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
            "required_approvals",
            "allow_secret_shape_check",
            "created_at",
        ]
        read_only_fields = fields

    def get_has_external_id(self, account: AwsAccount) -> bool:
        return bool(account.external_id)


class AccountRegisterSerializer(serializers.Serializer):
    account_id = serializers.CharField(
        max_length=_max_length(AwsAccount, "account_id"), help_text="The 12-digit AWS account id."
    )
    name = serializers.CharField(max_length=_max_length(AwsAccount, "name"))
    is_datalake = serializers.BooleanField(default=False, help_text="DMS runs here; requesters file for it.")
    is_remote = serializers.BooleanField(default=False, help_text="Secrets live here; approvers decide for it.")
    provisioner_role_arn = serializers.CharField(
        max_length=_max_length(AwsAccount, "provisioner_role_arn"),
        help_text="A role in this account that the workers assume; its ARN must name this account.",
    )
    external_id = serializers.CharField(
        max_length=_max_length(AwsAccount, "external_id"), required=False, default="", allow_blank=True
    )
    default_region = serializers.CharField(
        max_length=_max_length(AwsAccount, "default_region"), required=False, default="eu-west-1"
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
    required_approvals = serializers.IntegerField(
        min_value=1, max_value=32767, required=False, default=1, help_text="Distinct approvals a request needs."
    )
    allow_secret_shape_check = serializers.BooleanField(
        default=False,
        help_text="Preflight may read the secret once to check its key names (values are never kept).",
    )


# --- requests ----------------------------------------------------------------


class RequestSubmitSerializer(serializers.Serializer):
    datalake_account = serializers.CharField(
        max_length=_max_length(AwsAccount, "account_id"),
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
    engine = EngineField(max_length=_max_length(AccessRequest, "engine"), help_text="The DMS engine name.")
    endpoint_identifier = serializers.CharField(
        max_length=_max_length(AccessRequest, "endpoint_identifier"),
        help_text='The DMS endpoint identifier: starts with a letter; letters, digits and hyphens; no "--", no trailing hyphen.',
    )
    endpoint_type = EndpointTypeField(required=False, default="source", max_length=16)
    database_name = serializers.CharField(
        max_length=_max_length(AccessRequest, "database_name"), required=False, default="", allow_blank=True
    )
    role_name = serializers.CharField(
        max_length=255,
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
    justification = serializers.CharField(max_length=10000, help_text="Why DMS needs this secret.")
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
        return decision.plan_hash == decision.request.plan_hash


class StepSerializer(serializers.ModelSerializer):
    before = serializers.JSONField(read_only=True, allow_null=True, help_text="AWS state the step read before writing.")
    after = serializers.JSONField(read_only=True, allow_null=True, help_text="AWS state after the step.")
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
        ]
        read_only_fields = fields

    @extend_schema_field(DiagnosisSerializer(allow_null=True))
    def get_diagnosis_detail(self, step: ProvisioningStep) -> dict | None:
        return _diagnosis(step.diagnosis)


class PreflightCheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True)
    diagnosis = serializers.CharField(allow_null=True, required=False)


class PreflightSerializer(serializers.Serializer):
    ok = serializers.BooleanField(required=False)
    checks = PreflightCheckSerializer(many=True, required=False)
    diagnosis = serializers.CharField(allow_null=True, required=False)
    kms_key_arn = serializers.CharField(allow_null=True, required=False, help_text="The secret's key as resolved.")
    secret_keys = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        required=False,
        help_text="Key NAMES found in the secret when the shape check ran; values are never read out.",
    )


class RequestSummarySerializer(serializers.ModelSerializer):
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    datalake_account = serializers.SlugRelatedField(slug_field="account_id", read_only=True)
    remote_account = serializers.SlugRelatedField(slug_field="account_id", read_only=True)

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
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RequestDetailSerializer(LifecycleFieldsMixin, RequestSummarySerializer):
    decisions = DecisionSerializer(many=True, read_only=True)
    steps = StepSerializer(many=True, read_only=True)
    preflight = serializers.SerializerMethodField()
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
            "lifecycle_actions",
        ]
        read_only_fields = fields

    @extend_schema_field(PreflightSerializer(allow_null=True))
    def get_preflight(self, request: AccessRequest):
        # An empty report means preflight has not run (yet): say so with null.
        return request.preflight or None

    @extend_schema_field(DiagnosisSerializer(allow_null=True))
    def get_diagnosis_detail(self, request: AccessRequest) -> dict | None:
        return _diagnosis(request.diagnosis)

    def get_cdc_checklist(self, request: AccessRequest) -> list[str]:
        return cdc_checklist(request.engine)

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=permissions.ACTIONS)))
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


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, default="", allow_blank=True, max_length=10000)


class RejectSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=10000, help_text="Why the request is rejected (required).")


# --- audit -------------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label", read_only=True, help_text="Username, or `worker`.")
    request = serializers.IntegerField(source="request_id", read_only=True, allow_null=True)
    account = serializers.SlugRelatedField(slug_field="account_id", read_only=True, allow_null=True)
    details = serializers.JSONField(read_only=True)

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
