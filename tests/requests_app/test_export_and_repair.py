"""Downloading a request's change, and who may repair a grant when."""
from __future__ import annotations

import io
import json

import pytest
import yaml
from cfnlint.api import lint
from django.core.management import CommandError, call_command

from provisioning.documents import build_plan
from provisioning.statements import find_statement
from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser, ValidationFailed
from requests_app.export import grant_export, grant_export_for
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep, RequestState
from requests_app.permissions import lifecycle_actions
from requests_app.services import access_request_repair
from requests_app.workflow import STEP_NAMES
from tests.aws_world import DATALAKE_ID, FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT

pytestmark = pytest.mark.django_db


def _planned(request: AccessRequest) -> AccessRequest:
    request.plan = build_plan(grant_spec_for(request))
    request.save(update_fields=["plan"])
    return request


def test_the_exported_template_passes_cfn_lint_and_holds_the_applied_documents(cast):
    request = _planned(cast.request(state=RequestState.ACTIVE))
    exported = grant_export_for(user=cast.approver, request_id=request.pk, fmt="cloudformation")
    assert exported.filename == f"dms-access-request-{request.pk}.yaml"
    assert [str(m) for m in lint(exported.content, regions=["eu-west-1"])] == []
    (role,) = yaml.safe_load(exported.content)["Resources"].values()
    assert role["Properties"]["AssumeRolePolicyDocument"] == request.plan["role_trust_policy"]
    assert role["Properties"]["Policies"][0]["PolicyDocument"] == request.plan["role_inline_policy"]


def test_the_json_export_holds_the_two_remote_documents(cast):
    request = _planned(cast.request())
    exported = grant_export(request, "json")
    documents = json.loads(exported.content)
    sid = grant_spec_for(request).statement_sid
    assert find_statement(documents["secret_policy"], sid) == request.plan["secret_policy_statement"]
    assert find_statement(documents["key_policy"], sid) == request.plan["key_policy_statement"]


def test_nobody_outside_the_request_can_export_it(cast):
    request = _planned(cast.request())
    with pytest.raises(NotFoundForUser):
        grant_export_for(user=cast.outsider, request_id=request.pk, fmt="cli")
    with pytest.raises(NotFoundForUser):
        grant_export_for(user=cast.requester, request_id="x", fmt="cli")
    with pytest.raises(ValidationFailed):
        grant_export_for(user=cast.requester, request_id=request.pk, fmt="terraform")


def test_a_request_without_a_plan_has_nothing_to_export(cast):
    request = cast.request(plan={}, resolved_kms_key_arn="", preflight_status="failed")
    with pytest.raises(InvalidTransition):
        grant_export(request, "cloudformation")


def test_the_command_writes_the_cli_commands_and_every_file_they_read(cast, tmp_path):
    request = _planned(cast.request())
    out = io.StringIO()
    call_command("export_grant", str(request.pk), "--format", "cli", "--output", str(tmp_path), stdout=out)
    written = {path.name for path in tmp_path.iterdir()}
    script = (tmp_path / f"dms-access-request-{request.pk}.sh").read_text()
    referenced = {word[len("file://"):] for word in script.split() if word.startswith("file://")}
    assert referenced and referenced <= written
    trust = json.loads((tmp_path / "role-trust-policy.json").read_text())
    assert trust == request.plan["role_trust_policy"]
    assert len(out.getvalue().splitlines()) == len(written)


def test_the_command_refuses_an_unknown_request(db):
    with pytest.raises(CommandError):
        call_command("export_grant", "987654", stdout=io.StringIO())


def test_a_live_export_merges_into_the_policies_as_they_are(cast, portal_aws):
    portal_aws.seed_foreign_statements()
    request = _planned(cast.request(secret_arn=portal_aws.secret_arn, resolved_kms_key_arn=portal_aws.key_arn))
    out = io.StringIO()
    call_command("export_grant", str(request.pk), "--format", "json", "--live", stdout=out)
    documents = json.loads(out.getvalue())
    secret_statements = documents["secret_policy"]["Statement"]
    assert secret_statements == [FOREIGN_SECRET_STATEMENT, request.plan["secret_policy_statement"]]
    key_statements = documents["key_policy"]["Statement"]
    assert key_statements[:-1] == portal_aws.key_policy()["Statement"]
    assert FOREIGN_KEY_STATEMENT in key_statements
    assert key_statements[-1] == request.plan["key_policy_statement"]
    # Exporting only read.
    assert portal_aws.secret_policy()["Statement"] == [FOREIGN_SECRET_STATEMENT]
    roles = [role["RoleName"] for role in portal_aws.admin(DATALAKE_ID, "iam").list_roles()["Roles"]]
    assert request.role_name not in roles


# --- repair ----------------------------------------------------------------------


def test_repair_re_runs_every_grant_step_and_keeps_the_plan(cast, enqueued, django_capture_on_commit_callbacks):
    request = cast.request(state=RequestState.ACTIVE, drift={"drifted": True, "kinds": ["endpoint_missing"]})
    for position, name in enumerate(STEP_NAMES["grant"]):
        ProvisioningStep.objects.create(request=request, phase="grant", name=name, position=position, status="succeeded")
    assert "repair" in lifecycle_actions(cast.requester, request)

    with django_capture_on_commit_callbacks(execute=True):
        repaired = access_request_repair(request_id=request.pk, user=cast.staff, source_ip="10.2.2.2")
    assert repaired.state == RequestState.PROVISIONING
    assert repaired.plan_hash == request.plan_hash
    assert set(repaired.steps.filter(phase="grant").values_list("status", flat=True)) == {"pending"}
    assert enqueued == [(request.pk, "grant")]
    event = AuditEvent.objects.get(request=request)
    assert (event.action, event.actor_label, event.source_ip) == ("grant.repair_requested", "sam", "10.2.2.2")
    assert event.details["drift_kinds"] == ["endpoint_missing"]


def test_only_the_people_who_may_revoke_may_repair(cast, enqueued):
    request = cast.request(state=RequestState.ACTIVE)
    assert "repair" not in lifecycle_actions(cast.requester, request)  # nothing drifted
    with pytest.raises(NotFoundForUser):
        access_request_repair(request_id=request.pk, user=cast.outsider)
    assert access_request_repair(request_id=request.pk, user=cast.approver).state == RequestState.PROVISIONING


@pytest.mark.parametrize("state", [s for s in RequestState.values if s != RequestState.ACTIVE])
def test_only_an_active_grant_is_repaired(cast, enqueued, state):
    request = cast.request(state=state)
    with pytest.raises((InvalidTransition, NotAllowed)):
        access_request_repair(request_id=request.pk, user=cast.requester)
    assert AccessRequest.objects.get(pk=request.pk).state == state
    assert enqueued == []
