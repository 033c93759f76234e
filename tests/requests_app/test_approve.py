"""Approving and rejecting: the rules of DESIGN.md section 1, tried and refused at the service."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser, PlanChanged, ValidationFailed
from requests_app.models import AccessRequest, AuditEvent, Decision, ProvisioningStep, RequestState
from requests_app.services import access_request_approve, access_request_reject
from requests_app.validation import COMMENT_MAX, COMMENT_TOO_LONG
from tests.factories import RemoteAccountFactory, UserFactory


def _state(request) -> str:
    return AccessRequest.objects.get(pk=request.pk).state


def test_an_approver_approves_and_the_grant_is_scheduled_after_commit(
    cast, enqueued, django_capture_on_commit_callbacks
):
    request = cast.request()
    with django_capture_on_commit_callbacks(execute=True):
        result = access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver, comment="ok", source_ip="10.0.0.7")
        assert enqueued == []  # nothing reaches the workers before the commit

    assert result.state == RequestState.APPROVED
    assert result.decided_at is not None
    assert enqueued == [(request.pk, "grant")]
    steps = list(ProvisioningStep.objects.filter(request=request).values_list("name", "status"))
    assert [name for name, _ in steps][:2] == ["preflight", "create_role"]
    assert {status for _, status in steps} == {"pending"}
    decision = Decision.objects.get(request=request)
    assert (decision.approver, decision.plan_hash, decision.comment) == (cast.approver, request.plan_hash, "ok")
    events = list(AuditEvent.objects.filter(request=request).order_by("id"))
    assert [e.action for e in events] == ["decision.approve", "request.approved"]
    assert events[1].details["from_state"] == "pending_approval"
    assert events[1].details["to_state"] == "approved"
    assert events[1].details["plan_hash"] == request.plan_hash
    assert {e.source_ip for e in events} == {"10.0.0.7"}
    assert {e.actor_label for e in events} == {"rami"}


def test_nobody_approves_their_own_request_not_even_a_superuser_listed_as_approver(cast, enqueued):
    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    cast.remote.approvers.add(boss)
    cast.datalake.requesters.add(boss)
    request = cast.request(requester=boss)

    with pytest.raises(NotAllowed, match="own request"):
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=boss)
    with pytest.raises(NotAllowed, match="own request"):
        access_request_reject(request_id=request.pk, user=boss, comment="never mind")
    assert _state(request) == RequestState.PENDING_APPROVAL
    assert not Decision.objects.exists()
    assert not AuditEvent.objects.exists()


def test_only_approvers_of_the_requests_remote_account_decide(cast, enqueued):
    other_remote_approver = UserFactory()
    RemoteAccountFactory(approvers=[other_remote_approver])
    datalake_approver = UserFactory()
    cast.datalake.approvers.add(datalake_approver)  # may see the request, not decide on it
    request = cast.request()

    with pytest.raises(NotFoundForUser):  # an approver of another account may not even see it
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=other_remote_approver)
    for user in (datalake_approver, cast.staff):  # they see it, but do not decide for the Remote account
        with pytest.raises(NotAllowed):
            access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=user)
        with pytest.raises(NotAllowed):
            access_request_reject(request_id=request.pk, user=user, comment="no")
    assert _state(request) == RequestState.PENDING_APPROVAL
    assert not Decision.objects.exists()


def test_an_approver_removed_from_the_account_can_no_longer_decide(cast, enqueued):
    request = cast.request()
    cast.remote.approvers.remove(cast.approver)
    with pytest.raises(NotFoundForUser):  # nor see it any more
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert AccessRequest.objects.get(pk=request.pk).state == RequestState.PENDING_APPROVAL


def test_n_distinct_approvals_are_needed_and_each_approver_decides_once_per_plan(cast, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = cast.request()

    first = access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert first.state == RequestState.PENDING_APPROVAL
    with pytest.raises(InvalidTransition, match="already decided"):
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    with pytest.raises(InvalidTransition, match="already decided"):
        access_request_reject(request_id=request.pk, user=cast.approver, comment="changed my mind")
    assert _state(request) == RequestState.PENDING_APPROVAL

    second = access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.second_approver)
    assert second.state == RequestState.APPROVED
    assert Decision.objects.filter(request=request).count() == 2


def test_approvals_of_an_earlier_plan_do_not_count(cast, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = cast.request()
    access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    # The plan changed since (tests/requests_app/test_submit_aws.py changes it the
    # real way, through a re-run preflight).
    AccessRequest.objects.filter(pk=request.pk).update(plan={"changed": True}, plan_hash="f" * 64)

    after = access_request_approve(request_id=request.pk, plan_hash="f" * 64, user=cast.second_approver)
    assert after.state == RequestState.PENDING_APPROVAL  # one approval of the current plan, two needed
    approved = access_request_approve(request_id=request.pk, plan_hash="f" * 64, user=cast.approver)  # re-approves the new plan
    assert approved.state == RequestState.APPROVED


def test_an_approval_by_someone_no_longer_approver_does_not_count(cast, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    third = UserFactory()
    cast.remote.approvers.add(third)
    request = cast.request()
    access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=third)
    cast.remote.approvers.remove(third)
    after = access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert after.state == RequestState.PENDING_APPROVAL


def test_a_request_whose_preflight_failed_cannot_be_approved_and_the_refusal_names_the_diagnosis(cast, enqueued):
    request = cast.request(
        preflight_status=AccessRequest.PreflightStatus.FAILED,
        diagnosis="aws_managed_key",
        preflight={"ok": False, "checks": [], "diagnosis": "aws_managed_key"},
    )
    with pytest.raises(NotAllowed, match="aws_managed_key") as refused:
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert "customer managed KMS key" in refused.value.message  # the remediation, not just the code
    assert _state(request) == RequestState.PENDING_APPROVAL
    # It can still be rejected.
    rejected = access_request_reject(request_id=request.pk, user=cast.approver, comment="re-encrypt it under a CMK")
    assert rejected.state == RequestState.REJECTED


def test_rejecting_needs_a_comment(cast, enqueued):
    request = cast.request()
    with pytest.raises(ValidationFailed) as refused:
        access_request_reject(request_id=request.pk, user=cast.approver, comment="   ")
    assert list(refused.value.errors) == ["comment"]
    assert _state(request) == RequestState.PENDING_APPROVAL
    assert not Decision.objects.exists()


def test_one_rejection_ends_the_request_even_after_approvals(cast, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = cast.request()
    access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)

    rejected = access_request_reject(
        request_id=request.pk, user=cast.second_approver, comment="wrong secret", source_ip="10.1.1.1"
    )
    assert rejected.state == RequestState.REJECTED
    assert rejected.decided_at is not None
    event = AuditEvent.objects.get(request=request, action="request.rejected")
    assert event.details["comment"] == "wrong secret"
    assert (event.details["from_state"], event.details["to_state"]) == ("pending_approval", "rejected")
    third = UserFactory()
    cast.remote.approvers.add(third)
    with pytest.raises(InvalidTransition):
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=third)
    assert enqueued == []


def test_an_unknown_or_invisible_request_is_not_found(cast, enqueued):
    request = cast.request()
    with pytest.raises(NotFoundForUser):
        access_request_approve(request_id=request.pk + 1000, plan_hash=request.plan_hash, user=cast.approver)
    with pytest.raises(NotFoundForUser):
        access_request_approve(request_id="not-a-number", plan_hash=request.plan_hash, user=cast.approver)
    with pytest.raises(NotFoundForUser):
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.outsider)


@pytest.mark.parametrize("seen", ["f" * 64, "", "not-a-hash"])
def test_an_approval_names_the_plan_that_was_seen_and_another_plan_decides_nothing(cast, enqueued, seen):
    request = cast.request()

    with pytest.raises(PlanChanged) as refused:
        access_request_approve(request_id=request.pk, plan_hash=seen, user=cast.approver)

    assert refused.value.current_plan_hash == request.plan_hash
    assert refused.value.status_code == 409
    assert _state(request) == RequestState.PENDING_APPROVAL
    assert not Decision.objects.exists() and not AuditEvent.objects.exists()


def test_the_plan_is_checked_under_the_lock_as_the_row_now_is(cast, enqueued):
    request = cast.request()
    shown = request.plan_hash
    # The plan changes after the page was shown, before the approval arrives.
    AccessRequest.objects.filter(pk=request.pk).update(plan={"changed": True}, plan_hash="e" * 64)

    with pytest.raises(PlanChanged) as refused:
        access_request_approve(request_id=request.pk, plan_hash=shown, user=cast.approver)

    assert refused.value.current_plan_hash == "e" * 64
    assert not Decision.objects.exists()


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_an_over_long_comment_is_refused_with_the_shared_message_and_nothing_is_decided(cast, enqueued, decide):
    request = cast.request()
    comment = "x" * (COMMENT_MAX + 1)

    with pytest.raises(ValidationFailed) as refused:
        if decide == "approve":
            access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver, comment=comment)
        else:
            access_request_reject(request_id=request.pk, user=cast.approver, comment=comment)

    assert refused.value.errors == {"comment": [COMMENT_TOO_LONG]}
    assert _state(request) == RequestState.PENDING_APPROVAL
    assert not Decision.objects.exists()
    # The limit itself is allowed.
    done = access_request_approve(
        request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver, comment="y" * COMMENT_MAX
    )
    assert Decision.objects.get(request=done).comment == "y" * COMMENT_MAX


APPROVE_QUERIES = 9


def _statements(captured) -> list[str]:
    # The test runs inside a transaction, so the service's own transaction is a
    # savepoint here; on a web or API request it is the outermost one (BEGIN and
    # COMMIT are not statements Django logs). The savepoint's two are left out.
    return [query["sql"] for query in captured.captured_queries if "SAVEPOINT" not in query["sql"]]


@pytest.mark.parametrize("required", [1, 2])
def test_approving_takes_a_fixed_number_of_queries_whoever_approved_before(cast, enqueued, required):
    """The lock (which reads whether the approver approves for either account),
    one read of the decisions on the plan (already decided? approvals so far?),
    the decision and its audit event; when the quorum is reached, the move with
    its audit event and the grant's steps. An approver listed through a group
    and earlier approvals cost nothing more."""
    cast.remote.required_approvals = required
    cast.remote.save()
    group = Group.objects.create(name="remote approvers")
    cast.remote.approver_groups.add(group)
    cast.approver.groups.add(group)
    request = cast.request()
    if required == 2:
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.second_approver)

    with CaptureQueriesContext(connection) as captured:
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver, comment="ok")

    assert _state(request) == RequestState.APPROVED
    statements = _statements(captured)
    assert len(statements) <= APPROVE_QUERIES, "\n".join(statements)
    assert statements[0].startswith("SELECT") and statements[0].rstrip().endswith('FOR UPDATE OF "requests_app_accessrequest"')


def test_an_approver_who_decided_is_refused_under_the_lock_with_two_queries(cast, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = cast.request()
    access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    with CaptureQueriesContext(connection) as captured, pytest.raises(InvalidTransition, match="already decided"):
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert len(_statements(captured)) == 2
    assert Decision.objects.filter(request=request).count() == 1
