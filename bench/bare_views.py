"""Bare views: the same page of rows from the same tables as each measured
page, fetched with plain queries and returned as JSON, with nothing else.

They exist only for the pages benchmark (``bench.urls``), as the baseline a
page's latency is compared with. They check no permission beyond the
approver's accounts that scope the rows, count nothing, and render no template.
"""
from __future__ import annotations

from django.db.models import Q
from django.http import JsonResponse

from requests_app.models import AccessRequest, AuditEvent, AwsAccount, Decision, ProvisioningStep, RequestState

REQUEST_COLUMNS = ("id", "state", "engine", "endpoint_identifier", "endpoint_type", "region", "secret_arn", "created_at",
                   "requester__username", "datalake_account__account_id", "remote_account__account_id")
EVENT_COLUMNS = ("id", "created_at", "actor_label", "source_ip", "action", "request_id", "account__account_id",
                 "target_arn", "details")


def _approver_account_ids(user) -> list[int]:
    return list(AwsAccount.objects.filter(approvers=user).values_list("pk", flat=True))


def _visible(user, accounts: list[int]) -> Q:
    return Q(requester=user) | Q(remote_account_id__in=accounts) | Q(datalake_account_id__in=accounts)


def approval_queue(request):
    rows = (
        AccessRequest.objects.filter(state=RequestState.PENDING_APPROVAL, remote_account_id__in=_approver_account_ids(request.user))
        .exclude(requester=request.user)
        .order_by("created_at", "id")
        .values(*REQUEST_COLUMNS)[:25]
    )
    return JsonResponse({"results": list(rows)})


def request_list(request):
    rows = (
        AccessRequest.objects.filter(_visible(request.user, _approver_account_ids(request.user)))
        .order_by("-created_at", "-id")
        .values(*REQUEST_COLUMNS, "plan_hash", "role_arn", "endpoint_arn", "diagnosis")[:50]
    )
    return JsonResponse({"results": list(rows)})


def request_detail(request, request_id: int):
    row = AccessRequest.objects.filter(pk=request_id).values(*REQUEST_COLUMNS, "plan", "preflight", "plan_hash").first()
    return JsonResponse({
        "request": row,
        "decisions": list(Decision.objects.filter(request_id=request_id).values("approver__username", "outcome", "comment", "created_at")),
        "steps": list(ProvisioningStep.objects.filter(request_id=request_id).order_by("phase", "position").values(
            "phase", "name", "status", "attempts", "started_at", "finished_at", "error", "diagnosis")),
        "events": list(AuditEvent.objects.filter(request_id=request_id).order_by("id").values(*EVENT_COLUMNS)),
    })


def audit_log(request):
    accounts = _approver_account_ids(request.user)
    rows = (
        AuditEvent.objects.filter(
            Q(request__remote_account_id__in=accounts)
            | Q(request__datalake_account_id__in=accounts)
            | Q(request__requester=request.user)
            | Q(request__isnull=True, account_id__in=accounts)
        )
        .order_by("-id")
        .values(*EVENT_COLUMNS)[:50]
    )
    return JsonResponse({"results": list(rows)})
