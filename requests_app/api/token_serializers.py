"""The API's bodies for personal API tokens. A token's text appears in one
answer only: the one that created it."""
from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from requests_app.models import API_TOKEN_NAME_MAX_LENGTH, API_TOKEN_NAME_PATTERN, ApiToken


class _WholeNumberField(serializers.IntegerField):
    # The schema says integer: a string or a float with a whole value is refused too.
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class ApiTokenSerializer(serializers.ModelSerializer):
    created_at = serializers.DateTimeField(source="created", read_only=True)
    expires_at = serializers.DateTimeField(source="expiry", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "created_at", "expires_at"]
        read_only_fields = fields


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.SerializerMethodField(
        help_text="The token: send it as `Authorization: Token <token>`. Shown in this answer only; "
        "the portal keeps just a hash of it."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    def get_token(self, token: ApiToken) -> str:
        return self.context["token"]


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.RegexField(
        API_TOKEN_NAME_PATTERN,
        max_length=API_TOKEN_NAME_MAX_LENGTH,
        trim_whitespace=False,
        help_text="What the token is for (e.g. `nightly-sync`); unique among your tokens. "
        "Decisions made with the token name it in the audit trail.",
    )
    expires_days = _WholeNumberField(
        required=False,
        min_value=1,
        max_value=settings.API_TOKEN_MAX_EXPIRY_DAYS,
        help_text=f"Days until the token stops working (default {settings.API_TOKEN_DEFAULT_EXPIRY_DAYS}).",
    )
