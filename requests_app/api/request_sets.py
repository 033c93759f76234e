"""REST API for requests naming several grants (``services.request_sets``).

    GET  /api/v1/request-sets/               the multi-grant requests you may see
    POST /api/v1/request-sets/               file one: the request's fields once, ``grants`` a list
    GET  /api/v1/request-sets/{id}/          one, with its grants
    GET  /api/v1/request-sets/{id}/plan/     every statement grouped by secret and key, and the hash to approve
    POST /api/v1/request-sets/{id}/approve/  approve every grant awaiting approval, once
    POST /api/v1/request-sets/{id}/reject/   reject every grant awaiting a first decision
    POST /api/v1/request-sets/{id}/revoke/   revoke every active or failed grant

Each grant is also a request of its own (``/api/v1/requests/{id}/``): its
steps, its retry, its revoke alone.
"""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from django.urls import reverse
from django.utils import timezone
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from requests_app import permissions, selectors, services
from requests_app.actions import SET_ACTIONS, offered_set_actions, set_action_arguments
from requests_app.api import serializers as s
from requests_app.api.submit_serializers import input_serializer
from requests_app.api.views import (
    ERROR_401,
    ERROR_403,
    ERROR_404,
    ERROR_404_PAGE,
    ERROR_409,
    ERROR_409_PLAN,
    ERRORS_400,
    IDEMPOTENCY_KEY,
    PortalPagination,
    _paginated,
    idempotency_key_of,
    _request_id,
    _source_ip,
    filed_response,
)
from requests_app.grant_input import GRANT_INPUT, SUBMIT_INPUT, arguments_from
from requests_app.models import AccessRequest, RequestSet
from requests_app.services.request_sets import MAX_GRANTS
from requests_app.set_plans import awaiting_grants, set_plan_for, set_plan_hash

SET_ID = OpenApiParameter("id", OpenApiTypes.INT64, OpenApiParameter.PATH, description="The multi-grant request's id.")

GrantInputSerializer = input_serializer("GrantInputSerializer", GRANT_INPUT, "One grant of a multi-grant request.")


class RequestSetSubmitSerializer(
    input_serializer(
        "RequestSetFieldsSerializer", [field for field in SUBMIT_INPUT if not field.per_grant], "The request's own fields."
    )
):
    """What a requester sends to file one request for several grants."""

    # A ListField, not ``many=True``: the list's own refusals (not a list,
    # empty, too long) are keyed ``grants``, as the service keys them, rather
    # than ``grants.non_field_errors``; a grant's are ``grants.<index>.<field>``.
    grants = serializers.ListField(
        child=GrantInputSerializer(), allow_empty=False, min_length=1, max_length=MAX_GRANTS,
        help_text=f"Each grant's fields (1 to {MAX_GRANTS}); all read secrets of one Remote account.",
    )  # fmt: skip


class RequestSetSerializer(serializers.ModelSerializer):
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    datalake_account = serializers.SlugRelatedField(slug_field="account_id", read_only=True)
    remote_account = serializers.SlugRelatedField(slug_field="account_id", read_only=True)
    states = serializers.SerializerMethodField(help_text="How many of the grants you see are in each state.")
    plan_hash = serializers.SerializerMethodField(
        help_text="The hash of the plan of the grants awaiting approval (empty when none awaits): what approving sends."
    )
    allowed_actions = serializers.SerializerMethodField(help_text="What you may do to the set now.")
    grants = serializers.SerializerMethodField(help_text="The grants you may see, oldest first.")

    class Meta:
        model = RequestSet
        fields = [
            "id", "requester", "datalake_account", "remote_account", "justification", "expires_at", "created_at",
            "states", "plan_hash", "allowed_actions", "grants",
        ]  # fmt: skip
        read_only_fields = fields

    def _grants(self, request_set: RequestSet) -> list[AccessRequest]:
        return self.context["grants"]

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_states(self, request_set: RequestSet) -> dict[str, int]:
        counts: dict[str, int] = {}
        for grant in self._grants(request_set):
            counts[grant.state] = counts.get(grant.state, 0) + 1
        return counts

    def get_plan_hash(self, request_set: RequestSet) -> str:
        return self.context["plan_hash"]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_allowed_actions(self, request_set: RequestSet) -> list[str]:
        return sorted(offered_set_actions(self.context["request"].user, self._grants(request_set)))

    @extend_schema_field(s.RequestSummarySerializer(many=True))
    def get_grants(self, request_set: RequestSet) -> list[dict]:
        return s.RequestSummarySerializer(self._grants(request_set), many=True).data


class RequestSetListSerializer(serializers.ModelSerializer):
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    datalake_account = serializers.SlugRelatedField(slug_field="account_id", read_only=True)
    remote_account = serializers.SlugRelatedField(slug_field="account_id", read_only=True)

    class Meta:
        model = RequestSet
        fields = ["id", "requester", "datalake_account", "remote_account", "justification", "expires_at", "created_at"]
        read_only_fields = fields


class SetPlanGrantSerializer(serializers.Serializer):
    request = serializers.IntegerField()
    endpoint_identifier = serializers.CharField()
    engine = serializers.CharField()
    endpoint_type = serializers.CharField()
    secret_arn = serializers.CharField()
    kms_key_arn = serializers.CharField(allow_blank=True)
    role_name = serializers.CharField()
    plan_hash = serializers.CharField(allow_blank=True, help_text="This grant's own plan.")
    role_trust_policy = serializers.JSONField(allow_null=True)
    role_inline_policy = serializers.JSONField(allow_null=True)
    endpoint_settings = serializers.JSONField(allow_null=True)


class SetPlanStatementSerializer(serializers.Serializer):
    request = serializers.IntegerField(help_text="The grant whose statement it is.")
    statement = serializers.JSONField(allow_null=True)


class SetPlanPolicySerializer(serializers.Serializer):
    arn = serializers.CharField()
    statements = SetPlanStatementSerializer(many=True)


class SetPlanSerializer(serializers.Serializer):
    plan_hash = serializers.CharField(allow_blank=True, help_text="Send it to approve (empty: no grant awaits).")
    awaiting = serializers.ListField(child=serializers.IntegerField(), help_text="The grants this plan is for.")
    grants = SetPlanGrantSerializer(many=True)
    secrets = SetPlanPolicySerializer(many=True, help_text="Each secret's new statements: one write per secret.")
    keys = SetPlanPolicySerializer(many=True, help_text="Each key's new statements: one write per key.")


def _set_id(value: str) -> int:
    return _request_id(value)  # the same rule for any id in a path


def _detail(request, set_id: int) -> dict:
    request_set, grants = selectors.request_set_detail_for(user=request.user, set_id=set_id)
    # The hash covers every grant awaiting approval, seen by this person or not.
    context = {"request": request, "grants": grants, "plan_hash": set_plan_hash(awaiting_grants(request_set))}
    return RequestSetSerializer(request_set, context=context).data


class RequestSetListView(APIView):
    pagination_class = PortalPagination
    aws_call_methods = ("POST",)  # filing runs a preflight per grant

    @staticmethod
    def aws_call_weight(request) -> int:
        """One draw on the AWS-call budget per grant (``throttling.AwsCallThrottle``).

        Reads the body: a body that is not JSON is refused (400) from here."""
        grants = request.data.get("grants") if hasattr(request.data, "get") else None
        return len(grants) if isinstance(grants, list) else 1

    @extend_schema(
        operation_id="request_sets_list",
        summary="Multi-grant requests you may see",
        # A page or page size out of range: 400 naming it, 404 past the last page (as every list).
        responses={200: RequestSetListSerializer(many=True), 400: ERRORS_400, 401: ERROR_401, 404: ERROR_404_PAGE},
    )
    def get(self, request):
        return _paginated(self, selectors.request_sets_visible_to(user=request.user), RequestSetListSerializer)

    @extend_schema(
        operation_id="request_sets_submit",
        summary="File one request for several grants",
        description=(
            "The request's own fields once, each grant's in `grants`. Every grant is validated and preflighted as "
            "a request of its own; one broken grant files none (errors are keyed `grants.<index>.<field>`). Each "
            "grant becomes a request (`/api/v1/requests/{id}/`) belonging to the set; the Remote account's "
            "approvers approve the set's one plan once."
        ),
        request=RequestSetSubmitSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: OpenApiResponse(RequestSetSerializer, description="Filed; `Location` names the new set."),
            200: OpenApiResponse(RequestSetSerializer, description="A retry: the set this key filed."),
            400: ERRORS_400,
            401: ERROR_401,
            403: ERROR_403,
            409: OpenApiResponse(s.ErrorSerializer, description="This Idempotency-Key was used with another body."),
        },
    )
    def post(self, request):
        if not permissions.can_file(request.user):
            raise exceptions.PermissionDenied("You are a requester for no DataLake account.")
        key = idempotency_key_of(request)
        body = RequestSetSubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        grants = [
            {field.argument: grant.get(field.name, field.default) for field in GRANT_INPUT}
            for grant in data.pop("grants")
        ]
        shared = {key: value for key, value in arguments_from(data).items() if key not in {f.argument for f in GRANT_INPUT}}
        started = timezone.now()
        request_set = services.request_set_submit(
            requester=request.user, grants=grants, idempotency_key=key, source_ip=_source_ip(request), **shared
        )
        return filed_response(_detail(request, request_set.pk), request_set, started=started, key=key,
                              location=reverse("api:request-set-detail", args=[request_set.pk]))  # fmt: skip


class RequestSetDetailView(APIView):
    @extend_schema(
        operation_id="request_sets_retrieve",
        summary="One multi-grant request, with its grants",
        parameters=[SET_ID],
        responses={200: RequestSetSerializer, 401: ERROR_401, 404: ERROR_404},
    )
    def get(self, request, id):
        return Response(_detail(request, _set_id(id)))


class RequestSetPlanView(APIView):
    @extend_schema(
        operation_id="request_sets_plan",
        summary="The set's one plan: every statement grouped by secret and key",
        description="Of the grants awaiting approval (of every grant when none awaits, with an empty `plan_hash`).",
        parameters=[SET_ID],
        responses={200: SetPlanSerializer, 401: ERROR_401, 404: ERROR_404},
    )
    def get(self, request, id):
        request_set, _ = selectors.request_set_detail_for(user=request.user, set_id=_set_id(id))
        return Response(set_plan_for(request.user, request_set))


class _SetActionView(APIView):
    action_name = ""

    def post(self, request, id):
        action = SET_ACTIONS[self.action_name]
        request_set = action.check(user=request.user, set_id=_set_id(id))
        action.service(set_id=request_set.pk, user=request.user, source_ip=_source_ip(request),
                       **set_action_arguments(action, request.data))  # fmt: skip
        return Response(_detail(request, request_set.pk))


def _set_action_schema(name: str, summary: str, who: str):
    # Declared on the view's ``post`` (``extend_schema_view``): ``extend_schema``
    # with an ``operation_id`` on the class would name every method of it.
    action = SET_ACTIONS[name]
    responses = {200: RequestSetSerializer, 401: ERROR_401, 403: ERROR_403, 404: ERROR_404, 409: ERROR_409}
    if action.body is not None:
        responses[400] = ERRORS_400
        if "plan_hash" in action.body().fields:
            responses[409] = ERROR_409_PLAN
    operation = extend_schema(
        operation_id=f"request_sets_{name}",
        summary=summary,
        description=f"Who: {who}",
        parameters=[SET_ID],
        request=action.body,
        responses=responses,
    )
    return extend_schema_view(post=operation)


@_set_action_schema(
    "approve",
    "Approve every grant awaiting approval, as shown in the set's plan",
    "approvers of the Remote account, never the requester. `plan_hash` is the set's (from its `/plan/`): if any "
    "grant's plan changed since, nothing is decided (409 with `current_plan_hash`). If any grant may not be "
    "approved (its preflight failed), none is.",
)
class RequestSetApproveView(_SetActionView):
    action_name = "approve"


@_set_action_schema(
    "reject", "Reject every grant awaiting a first decision (a comment is required)",
    "approvers of the Remote account, never the requester.",
)
class RequestSetRejectView(_SetActionView):
    action_name = "reject"


@_set_action_schema(
    "revoke", "Revoke every active or failed grant of the set",
    "the requester, approvers of the Remote account, portal administrators.",
)
class RequestSetRevokeView(_SetActionView):
    action_name = "revoke"
