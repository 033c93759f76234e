"""Downloading a request's change, and who may repair a grant when (and which steps run)."""
from __future__ import annotations

import io
import json

import pytest
import yaml
from cfnlint.api import lint
from django.core.management import CommandError, call_command

from provisioning.documents import build_plan
from provisioning.statements import find_statement
from provisioning.steps import table
from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser, ValidationFailed
from requests_app.export import grant_export, grant_export_for
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep, RepairRequest, RequestState
from requests_app.permissions import lifecycle_actions
from requests_app.services import (
    access_request_repair,
    access_request_repair_approve,
    access_request_repair_reject,
    grant_drift_record,
)
from requests_app.services.repair import repair_steps
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

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/db-AbCdEf"
ROLE_ARN = "arn:aws:iam::111111111111:role/dms-source-db"
REMOTE_DRIFT = {
    "drifted": True,
    "kinds": ["secret_statement_missing"],
    "findings": [{"kind": "secret_statement_missing", "resource": SECRET_ARN,
                  "message": "The grant's statement DmsAccess1 is no longer in the secret's resource policy."}],
}
DATALAKE_DRIFT = {
    "drifted": True,
    "kinds": ["endpoint_missing"],
    "findings": [{"kind": "endpoint_missing", "resource": "source-db", "message": "The endpoint is gone."}],
}


def _active(cast, drift: dict | None = None, **fields) -> AccessRequest:
    request = cast.request(state=RequestState.ACTIVE, drift=drift or {}, **fields)
    for position, name in enumerate(table.names("grant")):
        ProvisioningStep.objects.create(request=request, phase="grant", name=name, position=position, status="succeeded")
    return request


def _pending_steps(request: AccessRequest) -> list[str]:
    return list(request.steps.filter(phase="grant", status="pending").order_by("position").values_list("name", flat=True))


def _events(request: AccessRequest) -> list[str]:
    return list(AuditEvent.objects.filter(request=request).order_by("id").values_list("action", flat=True))


def test_datalake_drift_is_repaired_by_the_requester_with_only_the_datalake_steps(
    cast, enqueued, django_capture_on_commit_callbacks
):
    request = _active(cast, DATALAKE_DRIFT)
    assert "repair" in lifecycle_actions(cast.requester, request)

    with django_capture_on_commit_callbacks(execute=True):
        repaired = access_request_repair(request_id=request.pk, user=cast.requester, source_ip="10.2.2.2")
    assert repaired.state == RequestState.PROVISIONING
    assert repaired.plan_hash == request.plan_hash
    # The Remote steps stay done: the runner passes over them.
    assert _pending_steps(repaired) == ["preflight", "create_endpoint", "verify"]
    assert enqueued == [(request.pk, "grant")]
    event = AuditEvent.objects.get(request=request)
    assert (event.action, event.actor_label, event.source_ip) == ("grant.repair_requested", "dana", "10.2.2.2")
    assert event.details["drift_kinds"] == ["endpoint_missing"]
    assert event.details["steps"] == ["preflight", "create_endpoint", "verify"]


@pytest.mark.parametrize("who", ["requester", "approver", "staff"])
def test_no_drift_no_repair_for_anyone(cast, enqueued, who):
    request = _active(cast)
    assert not {"repair", "ask_repair"} & lifecycle_actions(getattr(cast, who), request)
    with pytest.raises(InvalidTransition, match="nothing to repair"):
        access_request_repair(request_id=request.pk, user=getattr(cast, who))
    assert AccessRequest.objects.get(pk=request.pk).state == RequestState.ACTIVE
    assert enqueued == [] and not RepairRequest.objects.exists()


def test_an_outsider_cannot_see_the_grant_to_repair_it(cast, enqueued):
    request = _active(cast, DATALAKE_DRIFT)
    with pytest.raises(NotFoundForUser):
        access_request_repair(request_id=request.pk, user=cast.outsider)


@pytest.mark.parametrize("state", [s for s in RequestState.values if s != RequestState.ACTIVE])
def test_only_an_active_grant_is_repaired(cast, enqueued, state):
    request = cast.request(state=state, drift=DATALAKE_DRIFT)
    with pytest.raises((InvalidTransition, NotAllowed)):
        access_request_repair(request_id=request.pk, user=cast.requester)
    assert AccessRequest.objects.get(pk=request.pk).state == state
    assert enqueued == []


def test_the_requester_only_asks_for_a_repair_of_remote_drift(cast, enqueued, mailoutbox,
                                                            django_capture_on_commit_callbacks):
    request = _active(cast, REMOTE_DRIFT)
    assert lifecycle_actions(cast.requester, request) == {"export", "ask_repair"}

    with django_capture_on_commit_callbacks(execute=True):
        asked = access_request_repair(request_id=request.pk, user=cast.requester, justification="Needed for the ETL.")
    assert asked.state == RequestState.ACTIVE
    assert _pending_steps(asked) == [] and enqueued == []
    repair = RepairRequest.objects.get(request=request)
    assert (repair.state, repair.requested_by, repair.justification) == ("pending", cast.requester, "Needed for the ETL.")
    assert repair.findings == REMOTE_DRIFT["findings"]  # kind, resource, message: no documents
    event = AuditEvent.objects.get(request=request, action="repair.requested")
    assert event.details["findings"] == [{"kind": "secret_statement_missing", "resource": SECRET_ARN}]
    (mail,) = mailoutbox
    assert set(mail.to) == {cast.approver.email, cast.second_approver.email}
    assert SECRET_ARN in mail.body

    pending = RepairRequest.objects.get(request=request)
    assert "ask_repair" not in lifecycle_actions(cast.requester, request, pending_repair=pending)
    assert lifecycle_actions(cast.approver, request, pending_repair=pending) == {"export", "decide_repair"}
    with pytest.raises(InvalidTransition, match="already has a repair"):
        access_request_repair(request_id=request.pk, user=cast.requester)


def test_a_repair_request_runs_once_the_quorum_of_distinct_approvers_agreed(cast, enqueued, mailoutbox,
                                                                           django_capture_on_commit_callbacks):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = _active(cast, REMOTE_DRIFT)
    access_request_repair(request_id=request.pk, user=cast.requester)

    with pytest.raises(NotAllowed, match="own grant"):
        access_request_repair_approve(request_id=request.pk, user=cast.requester, plan_hash=request.plan_hash)
    with pytest.raises(NotFoundForUser):
        access_request_repair_approve(request_id=request.pk, user=cast.outsider, plan_hash=request.plan_hash)
    with pytest.raises(NotAllowed):
        access_request_repair_approve(request_id=request.pk, user=cast.staff, plan_hash=request.plan_hash)  # not an approver: staff repair directly

    first = access_request_repair_approve(request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash, comment="ok by me")
    assert first.state == RequestState.ACTIVE and enqueued == []
    with pytest.raises(InvalidTransition, match="already approved"):
        access_request_repair_approve(request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash)
    # The same approver's repair button is no second approval either.
    with pytest.raises(InvalidTransition, match="already approved"):
        access_request_repair(request_id=request.pk, user=cast.approver)

    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        second = access_request_repair_approve(request_id=request.pk, user=cast.second_approver, plan_hash=request.plan_hash)
    assert second.state == RequestState.PROVISIONING
    # Only what the approvers saw drifted is put back.
    assert _pending_steps(second) == ["preflight", "grant_secret_policy", "verify"]
    assert enqueued == [(request.pk, "grant")]
    assert RepairRequest.objects.get(request=request).state == RepairRequest.State.APPROVED
    assert _events(request) == [
        "repair.requested", "decision.repair_approve", "decision.repair_approve", "grant.repair_requested",
    ]
    decision = AuditEvent.objects.filter(action="decision.repair_approve").last()
    assert (decision.details["approvals"], decision.details["required_approvals"]) == (2, 2)
    assert [m.to for m in mailoutbox] == [[cast.requester.email]]


def test_rejecting_a_repair_request_needs_a_comment_and_writes_nothing(cast, enqueued):
    request = _active(cast, REMOTE_DRIFT)
    access_request_repair(request_id=request.pk, user=cast.requester)
    with pytest.raises(ValidationFailed):
        access_request_repair_reject(request_id=request.pk, user=cast.approver, comment="  ")
    with pytest.raises(NotAllowed):
        access_request_repair_reject(request_id=request.pk, user=cast.requester, comment="mine")
    rejected = access_request_repair_reject(request_id=request.pk, user=cast.approver, comment="Removed on purpose.")
    assert rejected.state == RequestState.ACTIVE and enqueued == []
    assert RepairRequest.objects.get(request=request).state == RepairRequest.State.REJECTED
    event = AuditEvent.objects.get(request=request, action="decision.repair_reject")
    assert (event.actor_label, event.details["comment"]) == ("rami", "Removed on purpose.")
    with pytest.raises(InvalidTransition, match="no repair awaiting"):
        access_request_repair_approve(request_id=request.pk, user=cast.second_approver, plan_hash=request.plan_hash)
    # The requester may ask again.
    access_request_repair(request_id=request.pk, user=cast.requester)
    assert RepairRequest.objects.filter(request=request, state="pending").count() == 1


def test_a_remote_approver_repairs_remote_drift_with_the_accounts_quorum(cast, enqueued):
    request = _active(cast, REMOTE_DRIFT)
    assert "repair" in lifecycle_actions(cast.approver, request)
    repaired = access_request_repair(request_id=request.pk, user=cast.approver)
    assert repaired.state == RequestState.PROVISIONING
    assert _pending_steps(repaired) == ["preflight", "grant_secret_policy", "verify"]
    assert RepairRequest.objects.get(request=request).approved_by.get() == cast.approver

    cast.remote.required_approvals = 2
    cast.remote.save()
    other = _active(cast, REMOTE_DRIFT, endpoint_identifier="another-endpoint", role_name="another-role")
    one = access_request_repair(request_id=other.pk, user=cast.approver)
    assert one.state == RequestState.ACTIVE and _pending_steps(one) == []
    assert access_request_repair(request_id=other.pk, user=cast.second_approver).state == RequestState.PROVISIONING


def test_an_administrator_repairs_remote_drift_at_once_and_settles_the_pending_ask(cast, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = _active(cast, REMOTE_DRIFT)
    access_request_repair(request_id=request.pk, user=cast.requester)
    assert "repair" in lifecycle_actions(cast.staff, request)
    repaired = access_request_repair(request_id=request.pk, user=cast.staff)
    assert repaired.state == RequestState.PROVISIONING
    assert RepairRequest.objects.get(request=request).state == RepairRequest.State.APPROVED
    assert AuditEvent.objects.get(request=request, action="decision.repair_approve").details["override"] is True


def test_a_requester_who_is_also_approver_or_staff_only_asks(cast, enqueued):
    cast.remote.approvers.add(cast.requester)
    cast.requester.is_staff = True
    cast.requester.save()
    request = _active(cast, REMOTE_DRIFT)
    assert access_request_repair(request_id=request.pk, user=cast.requester).state == RequestState.ACTIVE
    assert RepairRequest.objects.get(request=request).state == RepairRequest.State.PENDING
    with pytest.raises(NotAllowed):
        access_request_repair_approve(request_id=request.pk, user=cast.requester, plan_hash=request.plan_hash)


def test_a_role_deleted_in_real_aws_leaves_remote_statements_naming_its_old_id_so_the_approvers_decide(cast, enqueued):
    drift = {
        "drifted": True,
        "kinds": ["role_missing", "role_recreated"],
        "findings": [
            {"kind": "role_missing", "resource": ROLE_ARN, "message": "gone"},
            {"kind": "role_recreated", "resource": SECRET_ARN, "message": "names AROA..."},
        ],
    }
    request = _active(cast, drift)
    assert lifecycle_actions(cast.requester, request) == {"export", "ask_repair"}
    access_request_repair(request_id=request.pk, user=cast.requester)
    repaired = access_request_repair_approve(request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash)
    assert _pending_steps(repaired) == ["preflight", "create_role", "grant_secret_policy", "verify"]


def test_a_pending_repair_request_closes_when_its_drift_goes_away(cast, enqueued):
    request = _active(cast, REMOTE_DRIFT)
    access_request_repair(request_id=request.pk, user=cast.requester)
    grant_drift_record(request_id=request.pk, report=REMOTE_DRIFT)  # still there: stays pending
    assert RepairRequest.objects.get(request=request).state == RepairRequest.State.PENDING
    grant_drift_record(request_id=request.pk, report={"drifted": False, "kinds": [], "findings": []})
    assert RepairRequest.objects.get(request=request).state == RepairRequest.State.CLOSED
    assert "repair.closed" in _events(request)
    with pytest.raises(InvalidTransition):
        access_request_repair_approve(request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash)


def test_a_drift_report_that_does_not_say_where_counts_as_remote(cast, enqueued):
    request = _active(cast, {"drifted": True, "kinds": ["endpoint_missing"]})
    assert lifecycle_actions(cast.requester, request) == {"export", "ask_repair"}
    assert access_request_repair(request_id=request.pk, user=cast.requester).state == RequestState.ACTIVE
    assert enqueued == []


@pytest.mark.parametrize(
    ("findings", "steps"),
    [
        ([{"kind": "role_missing", "resource": ROLE_ARN}], ["preflight", "create_role", "verify"]),
        ([{"kind": "role_recreated", "resource": ROLE_ARN}], ["preflight", "create_role", "verify"]),
        ([{"kind": "endpoint_settings_changed", "resource": "x"}], ["preflight", "create_endpoint", "verify"]),
        ([{"kind": "key_statement_changed", "resource": "arn:aws:kms:eu-west-1:222222222222:key/k"}],
         ["preflight", "grant_key_policy", "verify"]),
        ([{"kind": "role_recreated", "resource": "arn:aws:kms:eu-west-1:222222222222:key/k"}],
         ["preflight", "create_role", "grant_key_policy", "verify"]),
        ([{"kind": "something_new", "resource": "x"}], list(table.names("grant"))),
        ([], list(table.names("grant"))),
    ],
)
def test_a_repair_runs_the_steps_that_put_back_what_drifted(findings, steps):
    assert repair_steps(findings) == steps
