"""REST API views: parse the input, call one service or selector, render.

Who may do what is decided by ``requests_app.permissions`` inside the services
and selectors, exactly as for the pages; the domain's refusals become HTTP
statuses in ``requests_app.api.exceptions``.
"""
from __future__ import annotations

import re

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from requests_app import permissions, selectors, services, visibility
from requests_app.actions import ACTIONS, RequestAction, action_arguments
from requests_app.api import serializers as s
from requests_app.api.account_serializers import AccountMembersSerializer, AccountRegisterSerializer, AccountSerializer
from requests_app.api.filters import MAX_ID, AuditEventFilterSerializer, RequestFilterSerializer
from requests_app.api.submit_serializers import RequestSubmitSerializer
from requests_app.grant_input import arguments_from
from requests_app.membership import ACCOUNT_PREFETCH
from requests_app.models import AwsAccount
from requests_app.pagination import NewestFirstCursorPagination, StrictPageNumberPagination

ERRORS_400 = OpenApiResponse(s.ValidationErrorSerializer, description="Some fields are not valid; `errors` names them.")
ERROR_401 = OpenApiResponse(s.ErrorSerializer, description="No valid token or session.")
ERROR_403 = OpenApiResponse(s.ErrorSerializer, description="You may see this, but not do this.")
ERROR_404 = OpenApiResponse(s.ErrorSerializer, description="No such request, or not one you may see.")
ERROR_404_PAGE = OpenApiResponse(s.ErrorSerializer, description="No such page of results.")
ERROR_409 = OpenApiResponse(s.ErrorSerializer, description="The request's current state does not allow this.")
ERROR_409_PLAN = OpenApiResponse(
    s.PlanChangedSerializer,
    description="The request's current state does not allow this, or (`code` `plan_changed`) the plan is no longer "
    "the one whose hash you sent: nothing was decided; `current_plan_hash` names the plan to review.",
)

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e][\x20-\x7e]{0,254}$"
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes retries safe: the same key with the same body gives back the same request; "
        "the same key with another body is refused with 409. 1 to 255 printable ASCII characters."
    ),
)
_IDEMPOTENCY_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)
REQUEST_ID = OpenApiParameter("id", OpenApiTypes.INT64, OpenApiParameter.PATH, description="The request's id.")


class PortalPagination(StrictPageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _source_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def idempotency_key_of(request) -> str:
    """The ``Idempotency-Key`` header of a filing (empty when not sent); 400 when malformed."""
    key = request.headers.get("Idempotency-Key", "")
    if key and not _IDEMPOTENCY_KEY_RE.match(key):
        raise exceptions.ValidationError({"Idempotency-Key": ["must be 1 to 255 printable ASCII characters"]})
    return key


def filed_response(body: dict, filed, *, started, key: str, location: str) -> Response:
    """201 for what this call filed; 200 for what a retry with the same
    Idempotency-Key gets back (``filed`` was created before this call began)."""
    replayed = bool(key) and filed.created_at < started
    return Response(
        body, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED, headers={"Location": location}
    )


def _request_id(value: str) -> int:
    # The URL takes any segment so that a malformed id gets the API's JSON 404
    # rather than an HTML page, and so that an id beyond bigint never reaches
    # the database.
    if not (value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ID)) and 0 < int(value) <= MAX_ID):
        raise exceptions.NotFound()
    return int(value)


def _detail(request, request_id: int) -> dict:
    access_request = selectors.request_detail_for(user=request.user, request_id=request_id)
    return s.RequestDetailSerializer(access_request, context={"request": request}).data


def _paginated(view: APIView, queryset, serializer_class, context: dict | None = None) -> Response:
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context=context or {}).data)


# --- accounts ----------------------------------------------------------------


class AccountListView(APIView):
    @extend_schema(
        operation_id="accounts_list",
        summary="The accounts registry",
        responses={200: AccountSerializer(many=True), 401: ERROR_401},
    )
    def get(self, request):
        accounts = AwsAccount.objects.prefetch_related(*ACCOUNT_PREFETCH).order_by("name", "id")
        return Response(AccountSerializer(accounts, many=True).data)

    @extend_schema(
        operation_id="accounts_register",
        summary="Register an account (portal administrators)",
        request=AccountRegisterSerializer,
        responses={201: OpenApiResponse(AccountSerializer, description="Registered."), 400: ERRORS_400, 401: ERROR_401, 403: ERROR_403},
    )
    def post(self, request):
        if not permissions.can_register_account(request.user):
            raise exceptions.PermissionDenied("Only administrators may register accounts.")
        body = AccountRegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        account = services.account_register(actor=request.user, source_ip=_source_ip(request), **body.validated_data)
        account = AwsAccount.objects.prefetch_related(*ACCOUNT_PREFETCH).get(pk=account.pk)
        return Response(AccountSerializer(account).data, status=status.HTTP_201_CREATED)


ACCOUNT_ID = OpenApiParameter(
    "account_id",
    {"type": "string", "pattern": r"^[0-9]{12}$"},
    OpenApiParameter.PATH,
    description="The 12-digit AWS account id.",
)
_ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")


class AccountDetailView(APIView):
    @extend_schema(
        operation_id="accounts_members_set",
        summary="Change an account's approvers, requesters, groups, required approvals, waiting rules or Slack channel (portal administrators)",
        description=(
            "Each field given replaces the current value; the change is audited with before and after, and "
            "the account's approvers (before and after) are notified."
        ),
        parameters=[ACCOUNT_ID],
        request=AccountMembersSerializer,
        responses={
            200: AccountSerializer,
            400: ERRORS_400,
            401: ERROR_401,
            403: ERROR_403,
            404: OpenApiResponse(s.ErrorSerializer, description="No such account."),
        },
    )
    def patch(self, request, account_id: str):
        # Who may comes first: a caller who may not learns nothing of the body's rules or the registry.
        if not permissions.can_change_account_members(request.user):
            raise exceptions.PermissionDenied("Only portal administrators may change an account's members.")
        if not _ACCOUNT_ID_RE.fullmatch(account_id):
            raise exceptions.NotFound()
        body = AccountMembersSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        members = dict(body.validated_data)
        slack_channel = members.pop("slack_channel", None)
        if members or slack_channel is None:
            services.account_members_set(
                actor=request.user, account_id=account_id, source_ip=_source_ip(request), **members
            )
        if slack_channel is not None:
            services.account_slack_channel_set(
                actor=request.user, account_id=account_id, source_ip=_source_ip(request), slack_channel=slack_channel
            )
        account = AwsAccount.objects.prefetch_related(*ACCOUNT_PREFETCH).get(account_id=account_id)
        return Response(AccountSerializer(account).data)


# --- requests ----------------------------------------------------------------


class RequestListView(APIView):
    pagination_class = PortalPagination
    aws_call_methods = ("POST",)  # filing runs preflight
    @extend_schema(
        operation_id="requests_list",
        summary="Requests you may see",
        parameters=[RequestFilterSerializer],
        responses={200: s.RequestSummarySerializer(many=True), 400: ERRORS_400, 401: ERROR_401, 404: ERROR_404_PAGE},
    )
    def get(self, request):
        filters = RequestFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        if filters.validated_data.get("awaiting_my_approval"):
            queryset = selectors.approval_queue_for(user=request.user)
        else:
            queryset = selectors.requests_visible_to(user=request.user)
        queryset = filters.narrow(queryset, user=request.user).only(*s.RequestSummarySerializer.columns())
        return _paginated(self, queryset, s.RequestSummarySerializer)

    @extend_schema(
        operation_id="requests_submit",
        summary="File a request",
        description=(
            "Validates every field, computes the plan, runs preflight against AWS and puts the request in the "
            "Remote account's approval queue. With an `Idempotency-Key`, a retry with the same body returns "
            "the request filed the first time (200)."
        ),
        request=RequestSubmitSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: OpenApiResponse(s.RequestDetailSerializer, description="Filed; `Location` names the new request."),
            200: OpenApiResponse(s.RequestDetailSerializer, description="A retry: the request this key filed."),
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
        body = RequestSubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        started = timezone.now()
        access_request = services.access_request_submit(
            requester=request.user,
            idempotency_key=key,
            source_ip=_source_ip(request),
            **arguments_from(body.validated_data),
        )
        return filed_response(_detail(request, access_request.pk), access_request, started=started, key=key,
                              location=reverse("api:request-detail", args=[access_request.pk]))  # fmt: skip


class RequestDetailView(APIView):
    @extend_schema(
        operation_id="requests_retrieve",
        summary="One request: state, plan hash, decisions, steps, diagnosis, preflight",
        parameters=[REQUEST_ID],
        responses={200: s.RequestDetailSerializer, 401: ERROR_401, 404: ERROR_404},
    )
    def get(self, request, id: str):
        return Response(_detail(request, _request_id(id)))


class RequestPlanView(APIView):
    @extend_schema(
        operation_id="requests_plan",
        summary="The exact documents and settings the request will apply",
        description=(
            "A document is null when it cannot be computed yet (e.g. the secret's KMS key is not known). Until the "
            "request is approved, a requester who did not name the key sees a placeholder where the plan names it."
        ),
        parameters=[REQUEST_ID],
        responses={200: s.PlanSerializer, 401: ERROR_401, 404: ERROR_404},
    )
    def get(self, request, id: str):
        access_request = selectors.request_detail_for(user=request.user, request_id=_request_id(id))
        plan = visibility.plan_for(request.user, access_request)
        document_names = [name for name in s.PlanSerializer().fields if name != "plan_hash"]
        body = {name: plan.get(name) for name in document_names}
        body["plan_hash"] = access_request.plan_hash
        return Response(s.PlanSerializer(body).data)


class _RequestActionView(APIView):
    """POST .../<action>/: one action of the table (``requests_app.actions``),
    then the request as it now is.

    Who may is checked first (404 or 403), before the body is read; the
    body's fields are the service's keyword arguments next to request_id,
    user and source_ip.
    """

    action_name = ""  # its row in ``ACTIONS``, read at each call like the pages do

    def post(self, request, id: str):
        request_id = _request_id(id)
        action = ACTIONS[self.action_name]
        action.check(user=request.user, request_id=request_id)
        arguments = action_arguments(action, request.data)
        action.service(request_id=request_id, user=request.user, source_ip=_source_ip(request), **arguments)
        return Response(_detail(request, request_id))


def _action_schema(action: RequestAction, operation_id: str, summary: str, *, who: str):
    responses = {200: s.RequestDetailSerializer, 401: ERROR_401, 403: ERROR_403, 404: ERROR_404, 409: ERROR_409}
    if action.body is not None:
        responses[400] = ERRORS_400
    if "plan_hash" in (action.body().fields if action.body is not None else {}):
        responses[409] = ERROR_409_PLAN
    operation = extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=who,
        parameters=[REQUEST_ID],
        request=action.body,
        responses=responses,
    )

    def declare(view):
        view.action_name = action.name
        if action.calls_aws:
            view.aws_call_methods = ("POST",)  # drawn from the stricter budget (throttling.AwsCallThrottle)
        return extend_schema_view(post=operation)(view)

    return declare


@_action_schema(
    ACTIONS["approve"],
    "requests_approve",
    "Approve the request's current plan",
    who="Approvers of the request's Remote account; never the requester. The body names the plan you were shown "
    "(`plan_hash`): the approval counts for that plan only, and is refused with 409 if the plan has changed.",
)
class RequestApproveView(_RequestActionView):
    pass


@_action_schema(
    ACTIONS["reject"],
    "requests_reject",
    "Reject the request (a comment is required)",
    who="Approvers of the request's Remote account; never the requester. Any rejection ends the request.",
)
class RequestRejectView(_RequestActionView):
    pass


@_action_schema(ACTIONS["cancel"], "requests_cancel", "Cancel a request still awaiting approval", who="The requester.")
class RequestCancelView(_RequestActionView):
    pass


@_action_schema(
    ACTIONS["revoke"],
    "requests_revoke",
    "Revoke an active (or failed) grant: undo exactly what was done in AWS",
    who="The requester, approvers of its Remote account, portal administrators.",
)
class RequestRevokeView(_RequestActionView):
    pass


@_action_schema(
    ACTIONS["retry"],
    "requests_retry",
    "Run the failed steps again (done steps stay done)",
    who="The requester or a portal administrator.",
)
class RequestRetryView(_RequestActionView):
    pass


# --- audit -------------------------------------------------------------------


class AuditEventListView(APIView):
    pagination_class = NewestFirstCursorPagination
    @extend_schema(
        operation_id="audit_events_list",
        summary="Audit events of what you may see, newest first",
        parameters=[AuditEventFilterSerializer],
        responses={200: s.AuditEventSerializer(many=True), 400: ERRORS_400, 401: ERROR_401, 404: ERROR_404_PAGE},
    )
    def get(self, request):
        filters = AuditEventFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.audit_events_visible_to(user=request.user, **filters.selector_arguments())
        context = {"request": request, "document_accounts": visibility.document_accounts_of(request.user)}
        return _paginated(self, queryset, s.AuditEventSerializer, context)


class ApiNotFoundView(APIView):
    """Any other path under /api/v1/: the API's JSON 404, not the site's HTML page."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        raise exceptions.NotFound()

    post = put = patch = delete = get
