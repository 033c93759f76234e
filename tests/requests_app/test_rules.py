"""Approval rules (services.rules): who changes them, what they approve, and
what they never approve."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from requests_app.workflow import runner
from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser, ValidationFailed
from requests_app.models import AccessRequest, ApprovalRuleVersion, AuditEvent, RequestState, RuleDecision
from requests_app.selectors import plan_approvals
from requests_app.services import (
    access_request_approve,
    rule_change_propose,
    rule_disable_propose,
    rule_propose,
    rule_version_approve,
    rule_version_reject,
)
from requests_app.services.rules import request_match_rules, version_refusals, waiting_requests_match
from tests.factories import DataLakeAccountFactory, RemoteAccountFactory, UserFactory

pytestmark = pytest.mark.django_db

CRITERIA = {"engines": ["mysql", "postgres"], "secret_name_prefix": "prod/", "max_expiry_days": 30}


def _propose(cast, *, by=None, name="routine mysql", **criteria):
    fields = {"datalake_accounts": [cast.datalake.account_id], **CRITERIA, **criteria}
    return rule_propose(user=by or cast.approver, account_id=cast.remote.account_id, name=name, **fields)


def adopt(cast, capture, **criteria) -> ApprovalRuleVersion:
    """A rule proposed by one approver and approved by the other: in force."""
    version = _propose(cast, **criteria)
    with capture(execute=True):
        rule_version_approve(rule_id=version.rule_id, user=cast.second_approver, version=version.number)
    version.refresh_from_db()
    assert version.state == ApprovalRuleVersion.State.IN_FORCE
    return version


def routine(cast, **fields) -> AccessRequest:
    """A request the rule of ``CRITERIA`` approves: mysql, prod/ secret, expiring in ten days."""
    fields.setdefault("expires_at", timezone.now() + timedelta(days=10))
    return cast.request(**fields)


def _state(request) -> str:
    return AccessRequest.objects.get(pk=request.pk).state


def _account_events(cast) -> list[str]:
    return list(
        AuditEvent.objects.filter(account=cast.remote, request=None).order_by("id").values_list("action", flat=True)
    )


# --- changing rules: the approvers' quorum ------------------------------------------------------------


def test_a_proposed_rule_comes_into_force_when_another_approver_approves_it(cast, django_capture_on_commit_callbacks):
    version = _propose(cast, comment="the nightly jobs")
    assert version.state == ApprovalRuleVersion.State.PROPOSED and version.number == 1

    with pytest.raises(NotAllowed, match="proposed"):
        rule_version_approve(rule_id=version.rule_id, user=cast.approver, version=1)
    with django_capture_on_commit_callbacks(execute=True):
        rule_version_approve(rule_id=version.rule_id, user=cast.second_approver, version=1, comment="fine")

    version.refresh_from_db()
    assert version.state == ApprovalRuleVersion.State.IN_FORCE
    assert _account_events(cast) == ["rule.proposed", "rule.approval", "rule.in_force"]
    in_force = AuditEvent.objects.get(action="rule.in_force")
    assert (in_force.details["approved_by"], in_force.details["proposed_by"]) == (["rhea"], "rami")
    assert in_force.details["secret_name_prefix"] == "prod/"
    assert in_force.details["datalake_accounts"] == [cast.datalake.account_id]


def test_the_quorum_counts_current_approvers_other_than_the_proposer(cast, django_capture_on_commit_callbacks):
    third = UserFactory(username="ruth")
    cast.remote.approvers.add(third)
    cast.remote.required_approvals = 2
    cast.remote.save()
    version = _propose(cast)

    rule_version_approve(rule_id=version.rule_id, user=cast.second_approver, version=1)
    version.refresh_from_db()
    assert version.state == ApprovalRuleVersion.State.PROPOSED  # one of two
    with pytest.raises(InvalidTransition, match="already approved"):
        rule_version_approve(rule_id=version.rule_id, user=cast.second_approver, version=1)
    # Someone removed from the approvers no longer counts.
    cast.remote.approvers.remove(cast.second_approver)
    rule_version_approve(rule_id=version.rule_id, user=third, version=1)
    version.refresh_from_db()
    assert version.state == ApprovalRuleVersion.State.PROPOSED
    cast.remote.approvers.add(cast.second_approver)
    fourth = UserFactory()
    cast.remote.approvers.add(fourth)
    with django_capture_on_commit_callbacks(execute=True):
        rule_version_approve(rule_id=version.rule_id, user=fourth, version=1)
    version.refresh_from_db()
    assert version.state == ApprovalRuleVersion.State.IN_FORCE


def test_only_the_accounts_approvers_propose_and_decide(cast):
    other_remote_approver = UserFactory()
    RemoteAccountFactory(approvers=[other_remote_approver])
    for outsider in (cast.requester, cast.outsider, cast.staff, other_remote_approver):
        with pytest.raises(NotAllowed):
            _propose(cast, by=outsider)
    version = _propose(cast)
    for outsider in (cast.requester, cast.outsider, other_remote_approver):
        # They may not see the rule at all.
        with pytest.raises(NotFoundForUser):
            rule_version_approve(rule_id=version.rule_id, user=outsider, version=1)
        with pytest.raises(NotFoundForUser):
            rule_disable_propose(rule_id=version.rule_id, user=outsider)
    # An administrator sees rules but decides nothing for the account.
    with pytest.raises(NotAllowed):
        rule_version_approve(rule_id=version.rule_id, user=cast.staff, version=1)
    with pytest.raises(NotAllowed):
        rule_change_propose(rule_id=version.rule_id, user=cast.staff, datalake_accounts=[cast.datalake.account_id],
                            **CRITERIA)  # fmt: skip
    assert ApprovalRuleVersion.objects.get().state == ApprovalRuleVersion.State.PROPOSED


def test_a_rule_names_only_registered_datalake_accounts_and_known_engines(cast):
    remote_as_datalake = cast.remote.account_id
    with pytest.raises(ValidationFailed) as failure:
        _propose(cast, datalake_accounts=[remote_as_datalake, "999999999999"], engines=["mysql", "excel"],
                 secret_name_prefix="prod/*", max_expiry_days=400)  # fmt: skip
    assert set(failure.value.errors) == {"datalake_accounts", "engines", "secret_name_prefix", "max_expiry_days"}
    with pytest.raises(ValidationFailed) as failure:
        _propose(cast, datalake_accounts=[], engines=[], secret_name_prefix="", max_expiry_days=0)
    assert set(failure.value.errors) == {"datalake_accounts", "engines", "secret_name_prefix", "max_expiry_days"}
    _propose(cast)
    with pytest.raises(ValidationFailed, match="already has a rule named"):
        _propose(cast)
    with pytest.raises(ValidationFailed, match="Remote account"):
        rule_propose(user=cast.approver, account_id=cast.datalake.account_id, name="x",
                     datalake_accounts=[cast.datalake.account_id], **CRITERIA)  # fmt: skip


def test_a_change_is_decided_on_the_version_shown_and_one_at_a_time(cast, django_capture_on_commit_callbacks):
    version = adopt(cast, django_capture_on_commit_callbacks)
    change = rule_change_propose(rule_id=version.rule_id, user=cast.second_approver,
                                 datalake_accounts=[cast.datalake.account_id], engines=["mysql"],
                                 secret_name_prefix="prod/db-", max_expiry_days=7)  # fmt: skip
    assert change.number == 2
    with pytest.raises(InvalidTransition, match="already has a proposed change"):
        rule_disable_propose(rule_id=version.rule_id, user=cast.approver)
    with pytest.raises(InvalidTransition, match="version 2, not 1"):
        rule_version_approve(rule_id=version.rule_id, user=cast.approver, version=1)
    with pytest.raises(ValidationFailed, match="comment"):
        rule_version_reject(rule_id=version.rule_id, user=cast.approver, version=2, comment="")
    rule_version_reject(rule_id=version.rule_id, user=cast.approver, version=2, comment="seven days is too short")
    change.refresh_from_db()
    version.refresh_from_db()
    assert change.state == ApprovalRuleVersion.State.REJECTED and change.rejected_by == cast.approver
    assert version.state == ApprovalRuleVersion.State.IN_FORCE  # the version in force stays
    assert _account_events(cast)[-2:] == ["rule.proposed", "rule.rejected"]


# --- what a rule approves --------------------------------------------------------------------------------


def test_a_matching_request_is_approved_by_the_rule_bound_to_its_plan(
    cast, enqueued, django_capture_on_commit_callbacks
):
    version = adopt(cast, django_capture_on_commit_callbacks)
    request = routine(cast)

    with django_capture_on_commit_callbacks(execute=True):
        decision = request_match_rules(request_id=request.pk)

    request.refresh_from_db()
    assert request.state == RequestState.APPROVED and request.decided_at is not None
    assert (decision.rule_version, decision.plan_hash, decision.whole_decision) == (version, request.plan_hash, True)
    assert enqueued == [(request.pk, "grant")]
    events = list(AuditEvent.objects.filter(request=request).order_by("id"))
    assert [event.action for event in events][-2:] == ["decision.rule_approve", "request.approved"]
    assert {event.actor_label for event in events[-2:]} == {"rule routine mysql v1"}
    assert events[-1].details["rule_version"] == 1
    # The worker's apply-time check counts the rule's approval for this plan only.
    assert plan_approvals(request) == cast.remote.required_approvals
    assert runner.approval_of(request, request.plan) is None
    request.plan_hash = "0" * 64
    assert plan_approvals(request) == 0
    # Matching again decides nothing twice.
    assert request_match_rules(request_id=request.pk) is None
    assert RuleDecision.objects.count() == 1


OTHER_DATALAKE = "other DataLake account"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"engine": "oracle"}, "engine oracle"),
        ({"expires_at": None}, "does not expire"),
        ({"expires_at": timezone.now() + timedelta(days=31)}, "later than 30 days"),
        ({"preflight_status": "failed"}, "preflight"),
        ({"plan": {}, "plan_hash": ""}, "preflight"),
        ({"secret_arn": "arn:aws:secretsmanager:eu-west-1:222222222222:secret:test/db-AbCdEf"}, "does not start"),
        ({OTHER_DATALAKE: True}, "DataLake account"),
    ],
)
def test_a_request_outside_any_criterion_waits_for_people(cast, enqueued, django_capture_on_commit_callbacks, fields,
                                                          reason):  # fmt: skip
    adopt(cast, django_capture_on_commit_callbacks)
    if fields.pop(OTHER_DATALAKE, False):
        fields["datalake_account"] = DataLakeAccountFactory(requesters=[cast.requester])
    request = routine(cast, **fields)

    with django_capture_on_commit_callbacks(execute=True):
        assert request_match_rules(request_id=request.pk) is None

    assert _state(request) == RequestState.PENDING_APPROVAL
    assert not RuleDecision.objects.exists() and enqueued == []
    version = ApprovalRuleVersion.objects.get()
    assert any(reason in refusal for refusal in version_refusals(version, request, now=timezone.now()))


def test_a_rule_never_approves_for_a_requester_who_may_not_file(cast, enqueued, django_capture_on_commit_callbacks):
    adopt(cast, django_capture_on_commit_callbacks)
    request = routine(cast)
    cast.datalake.requesters.remove(cast.requester)
    assert request_match_rules(request_id=request.pk) is None
    cast.datalake.requesters.add(cast.requester)
    cast.requester.is_active = False
    cast.requester.save()
    assert request_match_rules(request_id=request.pk) is None
    assert _state(request) == RequestState.PENDING_APPROVAL


def test_a_rule_never_approves_the_request_of_someone_who_proposed_or_approved_it(
    cast, enqueued, django_capture_on_commit_callbacks
):
    adopt(cast, django_capture_on_commit_callbacks)
    cast.datalake.requesters.add(cast.approver, cast.second_approver)
    for decider in (cast.approver, cast.second_approver):
        request = routine(cast, requester=decider)
        assert request_match_rules(request_id=request.pk) is None
        assert _state(request) == RequestState.PENDING_APPROVAL
    # Another approver of the account who had no part in the rule gets what any requester gets.
    bystander = UserFactory()
    cast.remote.approvers.add(bystander)
    cast.datalake.requesters.add(bystander)
    with django_capture_on_commit_callbacks(execute=True):
        assert request_match_rules(request_id=routine(cast, requester=bystander).pk) is not None


def test_a_disabled_rule_stops_matching_and_earlier_decisions_keep_their_version(
    cast, enqueued, django_capture_on_commit_callbacks
):
    version = adopt(cast, django_capture_on_commit_callbacks)
    first = routine(cast)
    with django_capture_on_commit_callbacks(execute=True):
        request_match_rules(request_id=first.pk)

    disabling = rule_disable_propose(rule_id=version.rule_id, user=cast.second_approver, comment="audit season")
    # Proposed is not in force: the rule still approves meanwhile.
    with django_capture_on_commit_callbacks(execute=True):
        assert request_match_rules(request_id=routine(cast).pk) is not None
    with django_capture_on_commit_callbacks(execute=True):
        rule_version_approve(rule_id=version.rule_id, user=cast.approver, version=disabling.number)
    disabling.refresh_from_db()
    version.refresh_from_db()
    assert (disabling.state, disabling.enabled) == (ApprovalRuleVersion.State.IN_FORCE, False)
    assert version.state == ApprovalRuleVersion.State.SUPERSEDED

    later = routine(cast)
    assert request_match_rules(request_id=later.pk) is None
    assert _state(later) == RequestState.PENDING_APPROVAL
    assert RuleDecision.objects.get(request=first).rule_version.number == 1
    with pytest.raises(InvalidTransition, match="nothing to disable"):
        rule_disable_propose(rule_id=version.rule_id, user=cast.approver)


def test_requests_waiting_when_a_rule_comes_into_force_are_decided_by_it(
    cast, enqueued, django_capture_on_commit_callbacks
):
    waiting = routine(cast)
    outside = routine(cast, engine="oracle")
    reapproval = routine(cast)
    AccessRequest.objects.filter(pk=reapproval.pk).update(state=RequestState.NEEDS_REAPPROVAL, approval_round=1)

    adopt(cast, django_capture_on_commit_callbacks)  # its approval matches what waits, after the commit

    assert _state(waiting) == RequestState.APPROVED
    assert _state(reapproval) == RequestState.APPROVED
    assert _state(outside) == RequestState.PENDING_APPROVAL
    assert RuleDecision.objects.get(request=reapproval).approval_round == 1


def test_the_sweep_decides_a_request_handed_back_for_reapproval(cast, enqueued, django_capture_on_commit_callbacks):
    adopt(cast, django_capture_on_commit_callbacks)
    request = routine(cast)
    first_plan = request.plan_hash
    with django_capture_on_commit_callbacks(execute=True):
        request_match_rules(request_id=request.pk)
    # The worker found another plan before its first write: a new round, the old decision no longer counts.
    AccessRequest.objects.filter(pk=request.pk).update(
        state=RequestState.NEEDS_REAPPROVAL, approval_round=1, plan_hash="f" * 64
    )
    request.refresh_from_db()
    assert plan_approvals(request) == 0

    with django_capture_on_commit_callbacks(execute=True):
        assert waiting_requests_match() == [request.pk]

    assert _state(request) == RequestState.APPROVED
    assert list(RuleDecision.objects.filter(request=request).values_list("approval_round", "plan_hash")) == [
        (0, first_plan),
        (1, "f" * 64),
    ]


def test_with_rules_counting_beside_people_a_rule_is_one_approval(cast, enqueued, django_capture_on_commit_callbacks):
    cast.remote.rules_count_alongside_people = True
    cast.remote.required_approvals = 2
    cast.remote.save()
    third = UserFactory()
    cast.remote.approvers.add(third)
    version = _propose(cast)
    rule_version_approve(rule_id=version.rule_id, user=cast.second_approver, version=1)
    with django_capture_on_commit_callbacks(execute=True):
        rule_version_approve(rule_id=version.rule_id, user=third, version=1)

    # The rule first: one of two; a person then completes the quorum.
    first = routine(cast)
    with django_capture_on_commit_callbacks(execute=True):
        decision = request_match_rules(request_id=first.pk)
    assert decision.whole_decision is False
    assert _state(first) == RequestState.PENDING_APPROVAL
    assert plan_approvals(first) == 1
    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(request_id=first.pk, user=cast.approver, plan_hash=first.plan_hash)
    assert _state(first) == RequestState.APPROVED

    # A person first, the rule after.
    second = cast.request(expires_at=timezone.now() + timedelta(days=3))
    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(request_id=second.pk, user=cast.approver, plan_hash=second.plan_hash)
    assert _state(second) == RequestState.PENDING_APPROVAL
    with django_capture_on_commit_callbacks(execute=True):
        request_match_rules(request_id=second.pk)
    assert _state(second) == RequestState.APPROVED


def test_the_sweep_costs_the_same_whatever_the_number_of_requests_no_rule_could_approve(
    cast, enqueued, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    adopt(cast, django_capture_on_commit_callbacks)

    def sweep_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert waiting_requests_match() == []
        return len(captured)

    routine(cast, engine="oracle")
    few = sweep_queries()
    for _ in range(10):
        routine(cast, engine="oracle")
        routine(cast, expires_at=timezone.now() + timedelta(days=300))
    assert sweep_queries() == few


def test_a_rule_never_approves_for_another_remote_account_of_the_same_approvers(
    cast, enqueued, django_capture_on_commit_callbacks
):
    version = adopt(cast, django_capture_on_commit_callbacks)
    sibling = RemoteAccountFactory(approvers=[cast.approver, cast.second_approver])
    request = routine(cast, remote_account=sibling)

    with django_capture_on_commit_callbacks(execute=True):
        assert request_match_rules(request_id=request.pk) is None
        assert waiting_requests_match() == []

    assert _state(request) == RequestState.PENDING_APPROVAL
    assert "the rule belongs to another Remote account" in version_refusals(version, request, now=timezone.now())
