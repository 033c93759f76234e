"""REST API for the caller's own API tokens: list, create (the token is in
that one answer), revoke. Each write calls one service."""
from __future__ import annotations

from django.utils.cache import add_never_cache_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from requests_app import permissions, services
from requests_app.api import serializers as s
from requests_app.api.filters import MAX_ID
from requests_app.api.token_serializers import ApiTokenCreatedSerializer, ApiTokenCreateSerializer, ApiTokenSerializer
from requests_app.api.views import ERROR_401, ERRORS_400, _source_ip
from requests_app.errors import NotAllowed
from requests_app.models import ApiToken
from requests_app.services.api_tokens import NOT_WITH_A_TOKEN

TOKEN_ID = OpenApiParameter("id", OpenApiTypes.INT64, OpenApiParameter.PATH, description="The token's id.")
ERROR_403_TOKEN = OpenApiResponse(
    s.ErrorSerializer, description="Signed in with a token: tokens are made by a person signed in, not by a token."
)
ERROR_404_TOKEN = OpenApiResponse(s.ErrorSerializer, description="No such token, or not one of yours.")


def _token_id(value: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ID)) and 0 < int(value) <= MAX_ID):
        raise exceptions.NotFound()
    return int(value)


class ApiTokenListView(APIView):
    @extend_schema(
        operation_id="tokens_list",
        summary="Your API tokens (never the tokens themselves)",
        responses={200: ApiTokenSerializer(many=True), 401: ERROR_401},
    )
    def get(self, request):
        tokens = ApiToken.objects.filter(user=request.user).order_by("-created", "-id")
        return Response(ApiTokenSerializer(tokens, many=True).data)

    @extend_schema(
        operation_id="tokens_create",
        summary="Make an API token for yourself",
        description=(
            "The answer holds the token; it is shown this once and kept only as a hash. Needs a browser "
            "session: a token cannot make tokens."
        ),
        request=ApiTokenCreateSerializer,
        responses={
            201: OpenApiResponse(ApiTokenCreatedSerializer, description="Made; `token` is shown this once."),
            400: ERRORS_400,
            401: ERROR_401,
            403: ERROR_403_TOKEN,
        },
    )
    def post(self, request):
        # Refused before the body is read; the service checks again.
        if not permissions.can_create_api_token(request.user):
            raise NotAllowed(NOT_WITH_A_TOKEN)
        body = ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, text = services.api_token_create(user=request.user, source_ip=_source_ip(request), **body.validated_data)
        response = Response(ApiTokenCreatedSerializer(token, context={"token": text}).data, status=status.HTTP_201_CREATED)
        add_never_cache_headers(response)
        return response


class ApiTokenDetailView(APIView):
    @extend_schema(
        operation_id="tokens_revoke",
        summary="Revoke one of your API tokens",
        description="Its next use is refused with 401. Administrators may revoke anyone's token.",
        parameters=[TOKEN_ID],
        responses={
            200: OpenApiResponse(ApiTokenSerializer, description="Revoked: the token as it was."),
            401: ERROR_401,
            404: ERROR_404_TOKEN,
        },
    )
    def delete(self, request, id: str):
        token_id = _token_id(id)
        revoked = services.api_token_revoke(user=request.user, token_id=token_id, source_ip=_source_ip(request))
        return Response({**ApiTokenSerializer(revoked).data, "id": token_id})
