"""Rows for the page tests: the runbook's two accounts, their people, requests.

Requests are written straight to the tables (with their plan and audit
event) because the page tests are about rendering, not about submission.
"""
from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from django.db import transaction

from provisioning.documents import build_plan, plan_hash
from provisioning.steps import table
from requests_app.audit import record_event
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, AwsAccount, ProvisioningStep
from tests.factories import portal_admin_permission

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"
KEY_ARN = "arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"
_numbers = itertools.count(1)


def make_users() -> dict:
    """The people of the page tests (no passwords: the tests log in with force_login)."""
    model = get_user_model()
    users = {
        name: model.objects.create_user(name) for name in ("requester", "approver", "second_approver", "outsider")
    }
    users["staff"] = model.objects.create_user("staff", is_staff=True)
    users["staff"].user_permissions.add(portal_admin_permission())
    return users


def make_accounts(users: dict) -> dict:
    datalake = AwsAccount.objects.create(
        account_id="111111111111", name="DataLake", is_datalake=True,
        provisioner_role_arn="arn:aws:iam::111111111111:role/portal-provisioner",
    )
    remote = AwsAccount.objects.create(
        account_id="222222222222", name="Remote", is_remote=True,
        provisioner_role_arn="arn:aws:iam::222222222222:role/portal-provisioner",
    )
    other = AwsAccount.objects.create(
        account_id="333333333333", name="Other DataLake", is_datalake=True,
        provisioner_role_arn="arn:aws:iam::333333333333:role/portal-provisioner",
    )
    datalake.requesters.add(users["requester"])
    remote.approvers.add(users["approver"], users["second_approver"])
    return {"datalake": datalake, "remote": remote, "other_datalake": other}


def make_request(
    requester,
    accounts: dict,
    *,
    state: str = AccessRequest.State.PENDING_APPROVAL,
    justification: str = "Nightly replication of the orders database.",
    endpoint_identifier: str = "",
    with_steps: bool = False,
) -> AccessRequest:
    number = next(_numbers)
    identifier = endpoint_identifier or f"orders-source-{number}"
    with transaction.atomic():
        request = AccessRequest.objects.create(
            requester=requester,
            datalake_account=accounts["datalake"],
            remote_account=accounts["remote"],
            region="eu-west-1",
            secret_arn=SECRET_ARN,
            resolved_kms_key_arn=KEY_ARN,
            engine="mysql",
            endpoint_identifier=identifier,
            role_name=f"dms-secret-{identifier}",
            justification=justification,
            state=state,
            preflight_status=AccessRequest.PreflightStatus.PASSED,
            preflight={"ok": True, "checks": [{"name": "secret_exists", "ok": True, "message": "found", "diagnosis": None}]},
        )
        request.plan = build_plan(grant_spec_for(request))
        request.plan_hash = plan_hash(request.plan)
        request.save(update_fields=["plan", "plan_hash"])
        record_event(action="request.submitted", actor=requester, request=request, details={})
        if with_steps:
            done = state not in (AccessRequest.State.APPROVED, AccessRequest.State.PENDING_APPROVAL)
            for position, name in enumerate(table.names(ProvisioningStep.Phase.GRANT)):
                ProvisioningStep.objects.create(
                    request=request, phase=ProvisioningStep.Phase.GRANT, name=name, position=position,
                    status=ProvisioningStep.Status.SUCCEEDED if done else ProvisioningStep.Status.PENDING,
                    attempts=1 if done else 0,
                )
    return request
