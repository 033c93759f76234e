"""The API's bodies: what clients send and what they get back.

Input serializers only parse types and sizes; every rule about what a valid
request or account is lives in the services (and ``requests_app.validation``),
so the API and the pages refuse the same things with the same words. The
accounts' bodies are in ``account_serializers``, a new request's in
``submit_serializers``.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from provisioning.diagnoses import cdc_checklist, get_diagnosis
from requests_app import permissions, visibility
from requests_app.actions import API_ACTION_NAMES
from requests_app.api.lifecycle_serializers import LifecycleFieldsMixin
from requests_app.grant_input import FIELD_NAMES
from requests_app.models import AccessRequest, AuditEvent, Decision, ProvisioningStep


# --- shared pieces -----------------------------------------------------------


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


# --- requests ----------------------------------------------------------------


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
    request_set = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True,
        help_text="The request set this request is one grant of (`/api/v1/request-sets/{id}/`), approved with the "
        "set; null for a request of its own.",
    )

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "state",
            "request_set",
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
            # Every field the request was filed with (grant_input), besides those the summary shows.
            *(name for name in FIELD_NAMES if name not in RequestSummarySerializer.Meta.fields),
            "resolved_kms_key_arn",
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
