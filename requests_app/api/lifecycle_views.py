"""REST API views for an active grant's lifecycle: repair, extend, decide an
extension, download the change. Each calls one service, as the other views do."""
from __future__ import annotations

import json

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from requests_app.api import serializers as s
from requests_app.api.lifecycle_serializers import ExtendSerializer, RemoteDocumentsSerializer
from requests_app.api.views import ERROR_401, ERROR_404, ERRORS_400, ERROR_409, REQUEST_ID, _action_schema, _RequestActionView, _request_id
from requests_app.export import FORMATS, grant_export_for


@_action_schema(
    "requests_repair",
    "Put a drifted active grant back to its plan (re-runs the grant's steps)",
    who="The requester, approvers of its Remote account, staff. The plan and its approvals stay as they are.",
)
class RequestRepairView(_RequestActionView):
    service_name = "access_request_repair"
    aws_call_methods = ("POST",)


@_action_schema(
    "requests_extend",
    "Ask for an active grant to expire later",
    ExtendSerializer,
    who="The requester. The approvers of the Remote account decide; the expiry moves only once they agree.",
)
class RequestExtendView(_RequestActionView):
    service_name = "access_request_extend"
    body_serializer = ExtendSerializer


@_action_schema(
    "requests_extension_approve",
    "Approve the grant's pending extension",
    s.CommentSerializer,
    who="Approvers of the request's Remote account; never the requester.",
)
class ExtensionApproveView(_RequestActionView):
    service_name = "access_request_extension_approve"
    body_serializer = s.CommentSerializer


@_action_schema(
    "requests_extension_reject",
    "Reject the grant's pending extension (a comment is required); the expiry stays",
    s.RejectSerializer,
    who="Approvers of the request's Remote account; never the requester.",
)
class ExtensionRejectView(_RequestActionView):
    service_name = "access_request_extension_reject"
    body_serializer = s.RejectSerializer


class _FirstRenderer(DefaultContentNegotiation):
    # `?format=` names the export's format here, not a renderer as DRF reads it.
    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


EXPORT_FORMAT = OpenApiParameter(
    "format", str, OpenApiParameter.QUERY, required=True, enum=list(FORMATS),
    description="`cloudformation` (the DataLake role, YAML), `json` (the two Remote documents) or `cli` (AWS CLI commands).",
)


class RequestExportView(APIView):
    content_negotiation_class = _FirstRenderer

    @extend_schema(
        operation_id="requests_export",
        summary="Download the request's change: CloudFormation, the Remote documents, or AWS CLI commands",
        description="Built from the same plan the workers apply. Whoever may see the request may download it.",
        parameters=[REQUEST_ID, EXPORT_FORMAT],
        responses={
            (200, "application/yaml"): OpenApiResponse(OpenApiTypes.OBJECT, description="The change in the asked format: a CloudFormation template (YAML), the two Remote documents (JSON), or AWS CLI commands (text)."),
            (200, "application/json"): RemoteDocumentsSerializer,
            (200, "text/plain"): OpenApiTypes.STR,
            400: ERRORS_400,
            401: ERROR_401,
            404: ERROR_404,
            409: ERROR_409,
        },
    )
    def get(self, request, id: str):
        exported = grant_export_for(
            user=request.user, request_id=_request_id(id), fmt=request.query_params.get("format", "")
        )
        disposition = f'attachment; filename="{exported.filename}"'
        if exported.content_type == "application/json":
            return Response(json.loads(exported.content), headers={"Content-Disposition": disposition})
        content_type = "application/yaml" if exported.content_type == "application/yaml" else "text/plain"
        response = HttpResponse(exported.content, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = disposition
        return response
