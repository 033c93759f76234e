"""The API's bodies for an active grant's lifecycle: drift, extensions, exports."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from provisioning.drift import DATALAKE, DRIFT_KINDS, REMOTE, finding_account
from requests_app import permissions, selectors, visibility
from requests_app.actions import LIFECYCLE_ACTION_NAMES
from requests_app.models import AccessRequest, ExpiryExtension, RepairRequest


class DriftFindingSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=DRIFT_KINDS)
    resource = serializers.CharField(help_text="The ARN (or name) of what drifted.")
    message = serializers.CharField(help_text="What differs from the plan, in plain words.")
    expected = serializers.JSONField(allow_null=True, required=False)
    actual = serializers.JSONField(
        allow_null=True, required=False,
        help_text="What AWS holds now; for a Remote policy only for its approvers and administrators.",
    )
    account = serializers.ChoiceField(
        choices=[DATALAKE, REMOTE],
        help_text="Where it drifted: `remote` findings are the Remote account's approvers' to repair.",
    )


class DriftSerializer(serializers.Serializer):
    drifted = serializers.BooleanField(help_text="Whether AWS differed from the plan at the last check.")
    kinds = serializers.ListField(child=serializers.ChoiceField(choices=DRIFT_KINDS))
    findings = DriftFindingSerializer(many=True)
    role_id = serializers.CharField(allow_null=True, required=False, help_text="The live role's RoleId.")
    aws_request_ids = serializers.ListField(child=serializers.CharField(), required=False)


class ExtensionSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)

    class Meta:
        model = ExpiryExtension
        fields = ["id", "requested_by", "previous_expires_at", "expires_at", "justification", "approved_by", "created_at"]
        read_only_fields = fields


class PendingRepairSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)
    findings = serializers.SerializerMethodField(help_text="The drift findings the repair would put back.")

    class Meta:
        model = RepairRequest
        fields = ["id", "requested_by", "findings", "justification", "approved_by", "created_at"]
        read_only_fields = fields

    @extend_schema_field(DriftFindingSerializer(many=True))
    def get_findings(self, repair: RepairRequest) -> list[dict]:
        return with_accounts(repair.findings)


def with_accounts(findings: list[dict]) -> list[dict]:
    """Drift findings, each with the account it is in (``datalake`` or ``remote``)."""
    return [
        {**finding, "account": finding_account(finding.get("kind", ""), finding.get("resource", ""))}
        for finding in findings or []
    ]


class LifecycleFieldsMixin(serializers.Serializer):
    """The request detail's lifecycle fields (mixed into ``RequestDetailSerializer``)."""

    drift = serializers.SerializerMethodField(help_text="The last drift check's report; null before the first check.")
    pending_extension = serializers.SerializerMethodField(help_text="The extension awaiting the approvers, if any.")
    pending_repair = serializers.SerializerMethodField(
        help_text="The repair request awaiting the Remote account's approvers, if any."
    )
    lifecycle_actions = serializers.SerializerMethodField(
        help_text="Lifecycle actions the caller may take now: `extend`, `decide_extension` "
        "(`.../extension/approve/` or `.../extension/reject/`), `repair` (`.../repair/` runs the repair, or "
        "counts as this Remote approver's approval), `ask_repair` (`.../repair/` files a repair request for the "
        "Remote approvers), `decide_repair` (`.../repair/approve/` or `.../repair/reject/`), `export` (a GET)."
    )

    @extend_schema_field(DriftSerializer(allow_null=True))
    def get_drift(self, request: AccessRequest) -> dict | None:
        drift = visibility.drift_for(self.context["request"].user, request)
        if not drift:
            return None
        return {**drift, "findings": with_accounts(drift.get("findings", []))}

    @extend_schema_field(PendingRepairSerializer(allow_null=True))
    def get_pending_repair(self, request: AccessRequest) -> dict | None:
        repair = self._pending_repair(request)
        return PendingRepairSerializer(repair).data if repair is not None else None

    @staticmethod
    def _pending_repair(request: AccessRequest):
        return selectors.pending_repair_of(request) if request.state == "active" else None

    @extend_schema_field(ExtensionSerializer(allow_null=True))
    def get_pending_extension(self, request: AccessRequest) -> dict | None:
        extension = selectors.pending_extension_of(request)
        return ExtensionSerializer(extension).data if extension is not None else None

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=LIFECYCLE_ACTION_NAMES)))
    def get_lifecycle_actions(self, request: AccessRequest) -> list[str]:
        user = self.context["request"].user
        extension = selectors.pending_extension_of(request)
        return sorted(permissions.lifecycle_actions(
            user, request, pending_extension=extension, pending_repair=self._pending_repair(request)
        ))


class RemoteDocumentsSerializer(serializers.Serializer):
    secret_policy = serializers.JSONField(help_text="The secret's resource policy with the grant's statement.")
    key_policy = serializers.JSONField(help_text="The KMS key policy with the grant's statement.")
