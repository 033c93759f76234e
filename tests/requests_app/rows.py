"""Rows for workflow tests: the runbook's two accounts and approved requests.

An approved request is built the way the approval service leaves it: state
approved, the decision's audit event and the grant's steps scheduled in one
transaction, the worker told after the commit.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from requests_app.audit import record_event
from requests_app.models import AccessRequest, AwsAccount
from requests_app.workflow import schedule_grant

REGION = "eu-west-1"
DATALAKE_ID = "111111111111"
REMOTE_ID = "222222222222"
PROVISIONER_ROLE = "dms-access-portal-provisioner"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"
KEY_ARN = "arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"


def portal_accounts() -> tuple[AwsAccount, AwsAccount]:
    """The DataLake and Remote accounts of the runbook, registered once."""
    datalake, _ = AwsAccount.objects.get_or_create(
        account_id=DATALAKE_ID,
        defaults={
            "name": "DataLake",
            "is_datalake": True,
            "provisioner_role_arn": f"arn:aws:iam::{DATALAKE_ID}:role/{PROVISIONER_ROLE}",
        },
    )
    remote, _ = AwsAccount.objects.get_or_create(
        account_id=REMOTE_ID,
        defaults={
            "name": "Remote",
            "is_remote": True,
            "provisioner_role_arn": f"arn:aws:iam::{REMOTE_ID}:role/{PROVISIONER_ROLE}",
        },
    )
    return datalake, remote


def request_row(
    *,
    endpoint_identifier: str,
    role_name: str = "",
    state: str = AccessRequest.State.PENDING_APPROVAL,
    secret_arn: str = SECRET_ARN,
    kms_key_arn: str = KEY_ARN,
    engine: str = "mysql",
    replication_instance_arn: str = "",
) -> AccessRequest:
    """A request for the runbook's grant, in ``state``, with no steps yet."""
    datalake, remote = portal_accounts()
    requester, _ = get_user_model().objects.get_or_create(username="dana.requester")
    return AccessRequest.objects.create(
        requester=requester,
        datalake_account=datalake,
        remote_account=remote,
        region=REGION,
        secret_arn=secret_arn,
        kms_key_arn=kms_key_arn,
        engine=engine,
        endpoint_identifier=endpoint_identifier,
        role_name=role_name or f"dms-secret-{endpoint_identifier}",
        replication_instance_arn=replication_instance_arn,
        justification="nightly replication of the orders database",
        state=state,
    )


def approve(request: AccessRequest) -> AccessRequest:
    """Approve ``request`` as the approval service does, and schedule its grant."""
    approver, _ = get_user_model().objects.get_or_create(username="omar.approver")
    with transaction.atomic():
        request = AccessRequest.objects.select_for_update().get(pk=request.pk)
        request.state = AccessRequest.State.APPROVED
        request.decided_at = timezone.now()
        request.save(update_fields=["state", "decided_at", "updated_at"])
        record_event(action="request.approved", actor=approver, request=request)
        schedule_grant(request)
    return request


def approved_request(**fields) -> AccessRequest:
    """A request created and approved; its grant is enqueued after the commit."""
    return approve(request_row(**fields))
