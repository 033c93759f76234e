"""Query-string filters of the list endpoints.

Each filter set is a serializer: it parses the query string (a bad value is a
400 naming the parameter, never a database error), documents the parameters in
the schema, and narrows a queryset the selectors already scoped to the caller.
"""
from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import serializers

from requests_app.models import AccessRequest

# Ids are bigint columns: a larger number can never match, and must not reach
# the database (it would fail there instead of answering "no such thing").
MAX_ID = 2**63 - 1


class FilterSerializer(serializers.Serializer):
    """A filter set that refuses a parameter given with no value.

    DRF reads ``?state=`` from a query string as "not given", but the schema
    documents no empty value for any filter: ``?state=`` is a 400 like any
    other value outside the schema, not a silently unfiltered list.
    """

    def to_internal_value(self, data):
        empty = {
            name: ["must not be empty; leave the parameter out instead"]
            for name in self.fields
            if hasattr(data, "getlist") and any(value == "" for value in data.getlist(name))
        }
        if empty:
            raise serializers.ValidationError(empty)
        return super().to_internal_value(data)


class RequestFilterSerializer(FilterSerializer):
    state = serializers.ChoiceField(
        choices=AccessRequest.State.choices, required=False, help_text="Only requests in this state."
    )
    datalake_account = serializers.RegexField(
        r"^\d{12}$", required=False, help_text="Only requests for this DataLake account (12-digit account id)."
    )
    remote_account = serializers.RegexField(
        r"^\d{12}$", required=False, help_text="Only requests for secrets in this Remote account (12-digit account id)."
    )
    mine = serializers.BooleanField(required=False, default=False, help_text="`true`: only requests I filed.")
    request_set = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, required=False, help_text="Only the grants of this request set (id)."
    )
    awaiting_my_approval = serializers.BooleanField(
        required=False, default=False, help_text="`true`: only requests awaiting my approval (pending, or needing re-approval), oldest first."
    )

    def narrow(self, queryset: QuerySet, *, user) -> QuerySet:
        data = self.validated_data
        if data.get("state"):
            queryset = queryset.filter(state=data["state"])
        if data.get("datalake_account"):
            queryset = queryset.filter(datalake_account__account_id=data["datalake_account"])
        if data.get("remote_account"):
            queryset = queryset.filter(remote_account__account_id=data["remote_account"])
        if data.get("mine"):
            queryset = queryset.filter(requester=user)
        if data.get("request_set"):
            queryset = queryset.filter(request_set_id=data["request_set"])
        return queryset


class AuditEventFilterSerializer(FilterSerializer):
    request = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, required=False, help_text="Only events of this request (id)."
    )
    account = serializers.RegexField(
        r"^\d{12}$", required=False, help_text="Only events about this account (12-digit account id)."
    )
    actor = serializers.CharField(
        max_length=150, required=False, help_text="Only events by this actor (a username, or `worker`)."
    )
    since = serializers.DateTimeField(required=False, help_text="Only events at or after this time (ISO 8601).")
    # ``until`` before ``since`` is an empty range: no events, not an error
    # (the schema cannot say that one parameter must follow another).
    until = serializers.DateTimeField(required=False, help_text="Only events at or before this time (ISO 8601).")

    def selector_arguments(self) -> dict:
        """The filters as ``selectors.audit_events_visible_to`` takes them."""
        data = self.validated_data
        return {
            "request_id": data.get("request"),
            "account_id": data.get("account"),
            "actor": data.get("actor"),
            "since": data.get("since"),
            "until": data.get("until"),
        }
