"""A request for several databases, filed, approved once and provisioned, against the runbook's world in moto."""
from __future__ import annotations

import pytest

from requests_app.models import RequestState
from requests_app.services import request_set_approve, request_set_submit
from requests_app.services.request_sets import awaiting_grants, set_plan_hash
from tests.aws_world import DATALAKE_ID
from tests.requests_app.test_apply_plan_aws import drive  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def test_smoke(cast, portal_aws, drive, django_capture_on_commit_callbacks):  # noqa: F811
    world = portal_aws
    with django_capture_on_commit_callbacks(execute=True):
        request_set = request_set_submit(
            requester=cast.requester, datalake_account_id=DATALAKE_ID, justification="Two databases.",
            grants=[
                {"secret_arn": world.secret_arn, "engine": "mysql", "endpoint_identifier": "orders-a"},
                {"secret_arn": world.secret_arn, "engine": "postgres", "endpoint_identifier": "orders-b"},
            ],
        )
    grants = awaiting_grants(request_set)
    assert len(grants) == 2
    with django_capture_on_commit_callbacks(execute=True):
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=set_plan_hash(grants))
    for grant in grants:
        grant.refresh_from_db()
        assert grant.state == RequestState.APPROVED
    for grant in grants:
        assert drive(grant).state == RequestState.ACTIVE
