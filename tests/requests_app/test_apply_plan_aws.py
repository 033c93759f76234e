"""The worker applies only the approved plan (issue 19, items 2 and 3).

A request is filed and approved through the services against the runbook's
world in moto; then AWS changes before the worker starts (the secret is
re-encrypted under a second customer key). The worker computes the plan
again before its first write, finds another hash, writes nothing and hands
the new plan back to the approvers; approving it resumes the grant, and
revoke cleans exactly the targets the grant wrote.
"""
from __future__ import annotations

import json

import pytest
from django.core import mail

from provisioning.errors import PermanentAwsError
from requests_app.workflow import runner
from requests_app.audit import verify_chain
from requests_app.errors import NotAllowed
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, AuditEvent, RequestState
from requests_app.selectors import approval_queue_for, plan_approvals
from requests_app.services import (
    access_request_approve,
    access_request_repair,
    access_request_retry,
    access_request_revoke,
    access_request_submit,
)
from tests.aws_world import DATALAKE_ID, FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, REMOTE_ID

pytestmark = pytest.mark.django_db


@pytest.fixture
def drive(django_capture_on_commit_callbacks, enqueued):
    """Run a phase's steps until the workers would stop, one task at a time."""

    def run_phase(request: AccessRequest, phase: str = "grant") -> AccessRequest:
        while True:
            with django_capture_on_commit_callbacks(execute=True):
                if runner.run_step(request.pk, phase) is None:
                    break
        return AccessRequest.objects.get(pk=request.pk)

    return run_phase


def _second_key(world) -> str:
    """A second customer-managed key in the Remote account, with a root statement and a foreign one."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EnableRootPermissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{REMOTE_ID}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            FOREIGN_KEY_STATEMENT,
        ],
    }
    kms = world.admin(REMOTE_ID, "kms")
    return kms.create_key(Description="source-db credentials, rotated", Policy=json.dumps(policy))["KeyMetadata"]["Arn"]


def _key_policy(world, key_arn: str) -> dict:
    return json.loads(world.admin(REMOTE_ID, "kms").get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])


def _reencrypt(world, key_arn: str) -> None:
    world.admin(REMOTE_ID, "secretsmanager").update_secret(SecretId=world.secret_arn, KmsKeyId=key_arn)


def _sids(policy) -> set[str]:
    return {statement.get("Sid") for statement in (policy or {}).get("Statement", [])}


def _actions(request) -> list[str]:
    return list(AuditEvent.objects.filter(request=request).order_by("id").values_list("action", flat=True))


def _file(cast, world, **fields) -> AccessRequest:
    world.seed_foreign_statements()
    request = access_request_submit(
        requester=cast.requester,
        datalake_account_id=DATALAKE_ID,
        secret_arn=world.secret_arn,
        engine="mysql",
        endpoint_identifier="source-db-mysql",
        justification="Replicate orders into the lake.",
        **fields,
    )
    assert request.preflight_status == "passed", request.preflight
    return request


def _approve(request, user, django_capture_on_commit_callbacks) -> AccessRequest:
    with django_capture_on_commit_callbacks(execute=True):
        # The approver approves the plan as the page shows it now.
        seen = AccessRequest.objects.get(pk=request.pk).plan_hash
        return access_request_approve(request_id=request.pk, user=user, plan_hash=seen, comment="ok")


def _written_to_aws(world, key_arns, role_name) -> dict:
    return {
        "secret_policy": world.secret_policy(),
        "key_policies": {arn: _key_policy(world, arn) for arn in key_arns},
        "role": world.role(role_name),
        "endpoint": world.endpoint(),
    }


def test_secret_reencrypted_after_approval_needs_reapproval_then_grants_and_revokes_the_key_written(
    cast, portal_aws, drive, django_capture_on_commit_callbacks
):
    world = portal_aws
    # The requester even named the key: the approved plan, not the name, decides.
    request = _file(cast, world, kms_key_arn=world.key_arn)
    approved_hash = request.plan_hash
    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    first_key, second_key = world.key_arn, _second_key(world)
    _reencrypt(world, second_key)
    untouched = _written_to_aws(world, [first_key, second_key], request.role_name)
    mail.outbox.clear()

    request = drive(request)

    # Nothing was written to either key, the secret, IAM or DMS.
    assert _written_to_aws(world, [first_key, second_key], request.role_name) == untouched
    assert request.state == RequestState.NEEDS_REAPPROVAL
    assert request.diagnosis == "plan_changed"
    assert request.plan_hash != approved_hash
    assert request.resolved_kms_key_arn == second_key
    assert request.plan["role_inline_policy"]["Statement"][1]["Resource"] == second_key
    # Earlier approvals no longer count; the request is back in the approvers' queue.
    assert plan_approvals(request) == 0
    assert list(approval_queue_for(user=cast.approver)) == [request]
    assert [name for name, status in request.steps.values_list("name", "status") if status != "pending"] == [
        "preflight"
    ]
    event = AuditEvent.objects.get(request=request, action="request.needs_reapproval")
    assert event.details["previous_plan_hash"] == approved_hash
    assert event.details["plan_hash"] == request.plan_hash
    assert (event.details["previous_kms_key_arn"], event.details["kms_key_arn"]) == (first_key, second_key)
    assert "role_inline_policy" in event.details["changed"]
    # The Remote approvers are told, with the new diff.
    [to_approvers] = [m for m in mail.outbox if cast.approver.email in m.to]
    assert "approve the new plan" in to_approvers.subject
    diff = to_approvers.body.splitlines()
    assert any(line.startswith("+") and f'"Resource": "{second_key}"' in line for line in diff)
    assert any(line.startswith("-") and f'"Resource": "{first_key}"' in line for line in diff)
    assert cast.requester.email not in to_approvers.to

    # Nobody approves their own request, also not the new plan.
    with pytest.raises(NotAllowed):
        access_request_approve(
            request_id=request.pk, user=cast.requester, plan_hash=AccessRequest.objects.get(pk=request.pk).plan_hash
        )

    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    request = drive(request)

    assert request.state == RequestState.ACTIVE, (request.diagnosis, list(request.steps.values_list("name", "error")))
    sid = grant_spec_for(request).statement_sid
    assert sid in _sids(_key_policy(world, second_key))
    assert sid not in _sids(_key_policy(world, first_key))
    key_step = request.steps.get(phase="grant", name="grant_key_policy")
    assert [target["arn"] for target in key_step.targets] == [second_key]
    assert key_step.targets[0]["sid"] == sid and key_step.targets[0]["document"]["Sid"] == sid
    role_step = request.steps.get(phase="grant", name="create_role")
    assert [target["arn"] for target in role_step.targets] == [request.role_arn]
    endpoint_step = request.steps.get(phase="grant", name="create_endpoint")
    assert [target["arn"] for target in endpoint_step.targets] == [request.endpoint_arn]

    with django_capture_on_commit_callbacks(execute=True):
        access_request_revoke(request_id=request.pk, user=cast.requester)
    request = drive(request, "revoke")

    assert request.state == RequestState.REVOKED
    assert sid not in _sids(_key_policy(world, second_key))
    assert FOREIGN_KEY_STATEMENT in _key_policy(world, second_key)["Statement"]
    assert _key_policy(world, first_key) == untouched["key_policies"][first_key]
    assert world.secret_policy() == {"Version": "2012-10-17", "Statement": [FOREIGN_SECRET_STATEMENT]}
    assert world.role(request.role_name) is None and world.endpoint() is None
    assert verify_chain().ok


def test_reapproval_needs_the_quorum_again(cast, portal_aws, drive, django_capture_on_commit_callbacks):
    world = portal_aws
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = _file(cast, world)
    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    _approve(request, cast.second_approver, django_capture_on_commit_callbacks)
    _reencrypt(world, _second_key(world))
    request = drive(request)
    assert request.state == RequestState.NEEDS_REAPPROVAL

    request = _approve(request, cast.approver, django_capture_on_commit_callbacks)
    assert request.state == RequestState.NEEDS_REAPPROVAL
    assert drive(request).state == RequestState.NEEDS_REAPPROVAL  # a stray task writes nothing

    request = _approve(request, cast.second_approver, django_capture_on_commit_callbacks)
    assert request.state == RequestState.APPROVED
    assert drive(request).state == RequestState.ACTIVE


def test_a_plan_that_returns_to_an_earlier_approved_hash_is_approved_again(
    cast, portal_aws, drive, django_capture_on_commit_callbacks
):
    world = portal_aws
    request = _file(cast, world)
    first_hash = request.plan_hash
    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    first_key, second_key = world.key_arn, _second_key(world)
    _reencrypt(world, second_key)
    request = drive(request)
    assert request.state == RequestState.NEEDS_REAPPROVAL
    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    _reencrypt(world, first_key)  # and back, before the worker starts again

    request = drive(request)

    # The first plan again, but its first approval was of an earlier round: it does not count.
    assert (request.state, request.plan_hash, request.approval_round) == (RequestState.NEEDS_REAPPROVAL, first_hash, 2)
    assert plan_approvals(request) == 0
    request = _approve(request, cast.approver, django_capture_on_commit_callbacks)
    assert request.state == RequestState.APPROVED
    assert drive(request).state == RequestState.ACTIVE


def test_revoke_cleans_the_key_written_even_after_the_secret_moved_to_another(
    cast, portal_aws, drive, django_capture_on_commit_callbacks
):
    world = portal_aws
    request = _file(cast, world)
    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    request = drive(request)
    assert request.state == RequestState.ACTIVE
    sid = grant_spec_for(request).statement_sid
    first_key, second_key = world.key_arn, _second_key(world)
    _reencrypt(world, second_key)
    # Say a drift was found in the Remote account (a repair needs one) ...
    AccessRequest.objects.filter(pk=request.pk).update(drift={
        "drifted": True, "kinds": ["key_statement_missing"],
        "findings": [{"kind": "key_statement_missing", "resource": second_key,
                      "message": "The grant's statement is not in the key policy."}],
    })
    # ... an administrator's repair reads another plan: it is handed back, and nothing is
    # written to the new key.
    with django_capture_on_commit_callbacks(execute=True):
        access_request_repair(request_id=request.pk, user=cast.staff)
    request = drive(request)
    assert request.state == RequestState.NEEDS_REAPPROVAL
    assert request.resolved_kms_key_arn == second_key
    assert sid not in _sids(_key_policy(world, second_key))

    # The approvers say no by revoking: the key the grant wrote is cleaned.
    with django_capture_on_commit_callbacks(execute=True):
        access_request_revoke(request_id=request.pk, user=cast.approver)
    request = drive(request, "revoke")

    assert request.state == RequestState.REVOKED
    assert sid not in _sids(_key_policy(world, first_key))
    assert sid not in _sids(_key_policy(world, second_key))
    assert FOREIGN_KEY_STATEMENT in _key_policy(world, first_key)["Statement"]
    revoked = AuditEvent.objects.get(request=request, action="aws.revoke_key_policy")
    assert revoked.target_arn == first_key


def _fail_once(monkeypatch, name: str) -> None:
    real = runner.engine_step
    failed = []

    def engine_step(phase, step_name):
        function = real(phase, step_name)
        if step_name != name or failed:
            return function

        def fail(spec, **kwargs):
            failed.append(step_name)
            raise PermanentAwsError("kms:PutKeyPolicy denied", diagnosis="provisioner_access_denied")

        return fail

    monkeypatch.setattr(runner, "engine_step", engine_step)


def test_retry_reruns_only_from_the_failed_step_after_checking_the_plan(
    cast, portal_aws, drive, django_capture_on_commit_callbacks, monkeypatch
):
    world = portal_aws
    _fail_once(monkeypatch, "grant_key_policy")
    request = _file(cast, world)
    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    request = drive(request)
    assert (request.state, request.diagnosis) == (RequestState.FAILED, "provisioner_access_denied")

    with django_capture_on_commit_callbacks(execute=True):
        access_request_retry(request_id=request.pk, user=cast.requester)
    request = drive(request)

    assert request.state == RequestState.ACTIVE
    attempts = dict(request.steps.filter(phase="grant").values_list("name", "attempts"))
    # The read-only preflight ran again (the plan check); of the writes, only the failed step and those after it.
    assert attempts == {
        "preflight": 2, "create_role": 1, "grant_secret_policy": 1,
        "grant_key_policy": 2, "create_endpoint": 1, "verify": 1,
    }  # fmt: skip


def test_retry_after_the_secret_moved_writes_nothing_and_needs_reapproval(
    cast, portal_aws, drive, django_capture_on_commit_callbacks, monkeypatch
):
    world = portal_aws
    _fail_once(monkeypatch, "grant_key_policy")
    request = _file(cast, world)
    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    request = drive(request)
    assert request.state == RequestState.FAILED
    first_key, second_key = world.key_arn, _second_key(world)
    _reencrypt(world, second_key)
    before = _written_to_aws(world, [first_key, second_key], request.role_name)

    with django_capture_on_commit_callbacks(execute=True):
        access_request_retry(request_id=request.pk, user=cast.requester)
    request = drive(request)

    assert request.state == RequestState.NEEDS_REAPPROVAL
    assert _written_to_aws(world, [first_key, second_key], request.role_name) == before
    assert request.steps.get(phase="grant", name="grant_key_policy").attempts == 1

    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    request = drive(request)
    assert request.state == RequestState.ACTIVE
    sid = grant_spec_for(request).statement_sid
    assert sid in _sids(_key_policy(world, second_key)) and sid not in _sids(_key_policy(world, first_key))
    # The role now names the new key: create_role ran again under the new plan.
    inline = world.admin(DATALAKE_ID, "iam").get_role_policy(RoleName=request.role_name, PolicyName="ReadRemoteSecret")
    assert second_key in json.dumps(inline["PolicyDocument"])


def test_a_write_step_refuses_documents_that_are_not_the_approved_plan(
    cast, portal_aws, drive, django_capture_on_commit_callbacks
):
    world = portal_aws
    request = _file(cast, world)
    _approve(request, cast.approver, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert runner.run_step(request.pk, "grant") == "preflight"
    # The row is changed behind the services' back after the worker's plan check.
    AccessRequest.objects.filter(pk=request.pk).update(role_name="someone-elses-role")

    request = drive(request)

    assert (request.state, request.diagnosis) == (RequestState.FAILED, "plan_not_approved")
    assert world.role("someone-elses-role") is None and world.role("dms-secret-source-db-mysql") is None
    assert "aws.create_role" not in _actions(request)
