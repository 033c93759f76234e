"""The API's bodies for an active grant's lifecycle: drift, extensions, exports."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from provisioning.drift import DRIFT_KINDS
from requests_app import permissions, selectors, visibility
from requests_app.models import AccessRequest, ExpiryExtension
from requests_app.services.expiry import JUSTIFICATION_MAX


class DriftFindingSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=DRIFT_KINDS)
    resource = serializers.CharField(help_text="The ARN (or name) of what drifted.")
    message = serializers.CharField(help_text="What differs from the plan, in plain words.")
    expected = serializers.JSONField(allow_null=True, required=False)
    actual = serializers.JSONField(
        allow_null=True, required=False,
        help_text="What AWS holds now; for a Remote policy only for its approvers and administrators.",
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


class LifecycleFieldsMixin(serializers.Serializer):
    """The request detail's lifecycle fields (mixed into ``RequestDetailSerializer``)."""

    drift = serializers.SerializerMethodField(help_text="The last drift check's report; null before the first check.")
    pending_extension = serializers.SerializerMethodField(help_text="The extension awaiting the approvers, if any.")
    lifecycle_actions = serializers.SerializerMethodField(
        help_text="Lifecycle actions the caller may take now: `extend`, `decide_extension` "
        "(`.../extension/approve/` or `.../extension/reject/`), `repair`, `export` (a GET)."
    )

    @extend_schema_field(DriftSerializer(allow_null=True))
    def get_drift(self, request: AccessRequest) -> dict | None:
        return visibility.drift_for(self.context["request"].user, request)

    @extend_schema_field(ExtensionSerializer(allow_null=True))
    def get_pending_extension(self, request: AccessRequest) -> dict | None:
        extension = selectors.pending_extension_of(request)
        return ExtensionSerializer(extension).data if extension is not None else None

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=permissions.LIFECYCLE_ACTIONS)))
    def get_lifecycle_actions(self, request: AccessRequest) -> list[str]:
        user = self.context["request"].user
        extension = selectors.pending_extension_of(request)
        return sorted(permissions.lifecycle_actions(user, request, pending_extension=extension))


class ExtendSerializer(serializers.Serializer):
    expires_at = serializers.DateTimeField(help_text="The new expiry: later than the current one, in the future.")
    justification = serializers.CharField(
        max_length=JUSTIFICATION_MAX, required=False, default="", allow_blank=True, help_text="Why the grant is needed longer."
    )


class RemoteDocumentsSerializer(serializers.Serializer):
    secret_policy = serializers.JSONField(help_text="The secret's resource policy with the grant's statement.")
    key_policy = serializers.JSONField(help_text="The KMS key policy with the grant's statement.")
