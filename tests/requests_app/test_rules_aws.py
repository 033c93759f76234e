"""An approval rule from filing to an active grant, against the runbook's world in moto.

The requester files through the service; the rule in force approves the
request once its filing commits; the worker applies the plan the rule
approved. When AWS changes before the first write, the worker hands the new
plan back (``needs_reapproval``) and the sweep lets the rule decide again.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from requests_app.workflow import tasks
from requests_app.audit import verify_chain
from requests_app.models import AuditEvent, RequestState, RuleDecision
from requests_app.services import access_request_submit
from tests.aws_world import DATALAKE_ID
from tests.requests_app.test_apply_plan_aws import _reencrypt, _second_key, drive  # noqa: F401 (a fixture)
from tests.requests_app.test_rules import adopt

pytestmark = pytest.mark.django_db


def test_a_rule_approves_a_filed_request_and_again_after_the_plan_changed(
    cast, portal_aws, drive, django_capture_on_commit_callbacks  # noqa: F811
):
    world = portal_aws
    world.seed_foreign_statements()
    version = adopt(cast, django_capture_on_commit_callbacks, secret_name_prefix="prod/source-db/")

    with django_capture_on_commit_callbacks(execute=True):
        request = access_request_submit(
            requester=cast.requester, datalake_account_id=DATALAKE_ID, secret_arn=world.secret_arn, engine="mysql",
            endpoint_identifier="source-db-mysql", justification="Replicate orders into the lake.",
            expires_at=timezone.now() + timedelta(days=20),
        )
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED
    first = RuleDecision.objects.get(request=request)
    assert (first.rule_version, first.plan_hash) == (version, request.plan_hash)

    _reencrypt(world, _second_key(world))
    # The worker sends the changed plan back; the rule in force approves it
    # again as soon as that is committed, and the grant goes on.
    request = drive(request)
    assert request.state == RequestState.ACTIVE, list(request.steps.values_list("name", "error"))
    second = RuleDecision.objects.get(request=request, approval_round=1)
    assert second.plan_hash == request.plan_hash != first.plan_hash
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.tend_pending()["approved_by_rules"] == 0
    actions = list(AuditEvent.objects.filter(request=request).order_by("id").values_list("action", flat=True))
    assert actions.count("decision.rule_approve") == 2 and "request.needs_reapproval" in actions
    assert verify_chain().ok
