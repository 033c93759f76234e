"""The linter's findings in the preflight report; an error-level finding blocks approval."""
from __future__ import annotations

import pytest

from provisioning import documents
from requests_app.errors import NotAllowed
from requests_app.models import AccessRequest, RequestState
from requests_app.permissions import allowed_actions
from requests_app.services import access_request_approve, access_request_refresh_preflight, access_request_submit
from tests.aws_world import DATALAKE_ID

pytestmark = pytest.mark.django_db


def _file(cast, world) -> AccessRequest:
    return access_request_submit(
        requester=cast.requester,
        datalake_account_id=DATALAKE_ID,
        secret_arn=world.secret_arn,
        engine="postgres",
        database_name="orders",
        endpoint_identifier="orders-pg",
        justification="Replicate orders into the lake.",
    )


@pytest.fixture
def misspelt_plan(monkeypatch):
    """A plan builder with a defect: a misspelt action in the role's policy."""

    def build_plan(spec):
        plan = documents.build_plan(spec)
        plan["role_inline_policy"]["Statement"][0]["Action"] = ["secretsmanager:GetSecretValu"]
        return plan

    monkeypatch.setattr("requests_app.services.submission.build_plan", build_plan)


def test_a_clean_plan_shows_the_lint_check_and_can_be_approved(cast, portal_aws, enqueued):
    request = _file(cast, portal_aws)
    assert request.preflight_status == "passed"
    assert request.preflight["lint"] == []
    (check,) = [c for c in request.preflight["checks"] if c["name"] == "policy_lint"]
    assert check["ok"] is True and check["diagnosis"] is None
    assert access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver).state == RequestState.APPROVED


def test_an_error_finding_fails_preflight_and_blocks_approval(cast, portal_aws, misspelt_plan):
    request = _file(cast, portal_aws)
    assert (request.preflight_status, request.diagnosis) == ("failed", "policy_lint_error")
    assert request.preflight["ok"] is False
    (finding,) = request.preflight["lint"]
    assert finding["document"] == "role_inline_policy"
    assert finding["issue"] == "UNKNOWN_ACTION" and finding["severity"] == "error"
    (check,) = [c for c in request.preflight["checks"] if c["name"] == "policy_lint"]
    assert check["ok"] is False and "secretsmanager:GetSecretValu" in check["message"]

    assert "approve" not in allowed_actions(cast.approver, request)
    with pytest.raises(NotAllowed) as refused:
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert "policy_lint_error" in refused.value.message
    assert AccessRequest.objects.get(pk=request.pk).state == RequestState.PENDING_APPROVAL


def test_a_re_run_preflight_lints_again(cast, portal_aws, misspelt_plan, monkeypatch):
    request = _file(cast, portal_aws)
    monkeypatch.setattr("requests_app.services.submission.build_plan", documents.build_plan)
    request = access_request_refresh_preflight(request_id=request.pk, user=cast.requester)
    assert (request.preflight_status, request.diagnosis, request.preflight["lint"]) == ("passed", "", [])
    assert [c["name"] for c in request.preflight["checks"]].count("policy_lint") == 1
