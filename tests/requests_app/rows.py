"""Rows for workflow tests: the runbook's two accounts and approved requests.

Requests are written by the factories (preflight passed, a plan and its
hash) and approved through the approval service, so the workflow starts from
exactly what an approval leaves: state approved, the grant's steps pending,
the worker told after the commit.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model

from requests_app.models import AccessRequest, AwsAccount
from requests_app.services import access_request_approve
from tests.factories import AccessRequestFactory, DataLakeAccountFactory, RemoteAccountFactory

DATALAKE_ID = "111111111111"
REMOTE_ID = "222222222222"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"
KEY_ARN = "arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"
REQUESTER = "dana.requester"
APPROVER = "omar.approver"


def user(username: str):
    return get_user_model().objects.get_or_create(username=username)[0]


def portal_accounts() -> tuple[AwsAccount, AwsAccount]:
    """The DataLake and Remote accounts of the runbook, with a requester and an approver."""
    datalake = AwsAccount.objects.filter(account_id=DATALAKE_ID).first() or DataLakeAccountFactory(
        account_id=DATALAKE_ID, name="DataLake", requesters=[user(REQUESTER)]
    )
    remote = AwsAccount.objects.filter(account_id=REMOTE_ID).first() or RemoteAccountFactory(
        account_id=REMOTE_ID, name="Remote", approvers=[user(APPROVER)]
    )
    return datalake, remote


def request_row(*, endpoint_identifier: str, state: str = AccessRequest.State.PENDING_APPROVAL, **fields) -> AccessRequest:
    """A request for the runbook's secret, in ``state``, with no steps yet."""
    datalake, remote = portal_accounts()
    fields.setdefault("secret_arn", SECRET_ARN)
    fields.setdefault("resolved_kms_key_arn", KEY_ARN)
    return AccessRequestFactory(
        requester=user(REQUESTER),
        datalake_account=datalake,
        remote_account=remote,
        endpoint_identifier=endpoint_identifier,
        state=state,
        **fields,
    )


def approve(request: AccessRequest) -> AccessRequest:
    """Approve ``request`` through the approval service (which schedules the grant),
    naming the plan the request holds now, as the approver would see it."""
    seen = AccessRequest.objects.values_list("plan_hash", flat=True).get(pk=request.pk)
    return access_request_approve(
        request_id=request.pk, plan_hash=seen, user=user(APPROVER), comment="fine by the database owners"
    )


def approved_request(**fields) -> AccessRequest:
    """A request filed and approved; its grant is enqueued after the commit."""
    return approve(request_row(**fields))
