"""Multi-grant requests (services.request_sets): filing all or nothing, one
plan approved once, rejecting and revoking every grant, against the runbook's
world in moto."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from requests_app.audit import verify_chain
from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser, PlanChanged, ValidationFailed
from requests_app.models import AccessRequest, AuditEvent, Decision, RequestSet, RequestState
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_refresh_preflight,
    access_request_submit,
    request_set_approve,
    request_set_reject,
    request_set_revoke,
    request_set_submit,
)
from requests_app.services.request_sets import MAX_GRANTS
from requests_app.set_plans import awaiting_grants, set_plan, set_plan_hash
from tests.aws_world import DATALAKE_ID, REGION, REMOTE_ID
from tests.requests_app.test_apply_plan_aws import _reencrypt, _second_key
from tests.requests_app.test_rules import adopt

pytestmark = pytest.mark.django_db

JUSTIFICATION = "Two order databases into the lake."


def _grant(world, identifier: str, engine: str = "mysql", **fields) -> dict:
    return {"secret_arn": world.secret_arn, "engine": engine, "endpoint_identifier": identifier, **fields}


def _submit(cast, grants, capture, **shared) -> RequestSet:
    shared.setdefault("datalake_account_id", DATALAKE_ID)
    shared.setdefault("justification", JUSTIFICATION)
    with capture(execute=True):
        return request_set_submit(requester=cast.requester, grants=grants, **shared)


def _two(cast, world, capture, **shared) -> RequestSet:
    return _submit(cast, [_grant(world, "orders-a"), _grant(world, "orders-b", "postgres")], capture, **shared)


def _refused(cast, grants, **shared) -> dict[str, list[str]]:
    """The errors of a filing that must file nothing and audit nothing."""
    shared.setdefault("datalake_account_id", DATALAKE_ID)
    shared.setdefault("justification", JUSTIFICATION)
    requests, sets, events = AccessRequest.objects.count(), RequestSet.objects.count(), AuditEvent.objects.count()
    with pytest.raises(ValidationFailed) as refused:
        request_set_submit(requester=cast.requester, grants=grants, **shared)
    assert (AccessRequest.objects.count(), RequestSet.objects.count(), AuditEvent.objects.count()) == (
        requests, sets, events
    )
    return refused.value.errors


def _hash(request_set) -> str:
    return set_plan_hash(awaiting_grants(request_set))


def _states(request_set) -> list[str]:
    return list(request_set.grants.order_by("pk").values_list("state", flat=True))


def _set_events(request_set) -> list[str]:
    return list(
        AuditEvent.objects.filter(action__startswith="request_set.", details__request_set=request_set.pk)
        .order_by("id")
        .values_list("action", flat=True)
    )


def _other_secret(world, name: str = "prod/other-db/credentials") -> str:
    """A second secret of the Remote account, encrypted with the runbook's key."""
    return world.admin(REMOTE_ID, "secretsmanager").create_secret(
        Name=name, KmsKeyId=world.key_arn, SecretString=json.dumps({"username": "u", "password": "p"})
    )["ARN"]


# --- filing --------------------------------------------------------------------------------------------


def test_a_valid_set_files_each_grant_as_a_request_of_the_set(cast, portal_aws, django_capture_on_commit_callbacks):
    world = portal_aws
    other = _other_secret(world)
    request_set = _submit(
        cast,
        [_grant(world, "orders-a"), _grant(world, "orders-b", "postgres", secret_arn=other, database_name="orders")],
        django_capture_on_commit_callbacks,
        expires_at=timezone.now() + timedelta(days=10),
    )
    grants = list(request_set.grants.order_by("pk"))
    assert [(g.endpoint_identifier, g.engine, g.secret_arn) for g in grants] == [
        ("orders-a", "mysql", world.secret_arn), ("orders-b", "postgres", other),
    ]
    for grant in grants:
        assert (grant.requester, grant.datalake_account, grant.remote_account) == (
            cast.requester, cast.datalake, cast.remote
        )
        assert grant.justification == request_set.justification == JUSTIFICATION
        assert grant.expires_at == request_set.expires_at
        assert grant.state == RequestState.PENDING_APPROVAL
        assert grant.preflight_status == AccessRequest.PreflightStatus.PASSED and grant.plan_hash
        assert grant.resolved_kms_key_arn == world.key_arn
    assert grants[1].database_name == "orders"
    assert len({g.role_name for g in grants}) == 2  # each derived from its own endpoint

    submitted = AuditEvent.objects.get(action="request_set.submitted")
    assert submitted.details["request_set"] == request_set.pk
    assert submitted.details["requests"] == [g.pk for g in grants]
    assert submitted.details["plan_hash"] == _hash(request_set)
    assert AuditEvent.objects.filter(action="request.submitted", request__in=grants).count() == 2

    # One mail, to the Remote account's approvers (never the requester), naming both grants.
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == ["rami@example.com", "rhea@example.com"]
    assert f"#{request_set.pk}" in message.subject and "2 grants" in message.subject
    assert "orders-a" in message.body and "orders-b" in message.body
    assert "Preflight: 2 of 2 passed" in message.body


def test_the_set_plan_groups_statements_by_secret_and_key(cast, portal_aws, django_capture_on_commit_callbacks):
    world = portal_aws
    other = _other_secret(world)
    request_set = _submit(
        cast,
        [_grant(world, "orders-a"), _grant(world, "orders-b", "postgres"), _grant(world, "orders-c", secret_arn=other)],
        django_capture_on_commit_callbacks,
    )
    grants = awaiting_grants(request_set)
    plan = set_plan(grants)
    assert [row["request"] for row in plan["grants"]] == [g.pk for g in grants]
    by_secret = {entry["arn"]: [s["request"] for s in entry["statements"]] for entry in plan["secrets"]}
    assert by_secret == {world.secret_arn: [grants[0].pk, grants[1].pk], other: [grants[2].pk]}
    # All three secrets use the runbook's key: one key entry, three statements.
    assert [(entry["arn"], len(entry["statements"])) for entry in plan["keys"]] == [(world.key_arn, 3)]
    for entry in plan["secrets"] + plan["keys"]:
        for statement in entry["statements"]:
            assert statement["statement"]  # each grant's own statement, not an empty slot


@pytest.mark.parametrize(
    "grants, shared, errors",
    [
        pytest.param(
            lambda w: [_grant(w, "orders-a"), _grant(w, "orders-b", "cobol")], {},
            {"grants.1.engine"}, id="bad-engine-in-grant-2",
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a"), _grant(w, "orders-b")], {"justification": ""},
            {"justification"}, id="missing-justification",
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a"), {**_grant(w, "orders-b"), "colour": "blue"}], {},
            {"grants.1.colour"}, id="unknown-field",
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a"), {"secret_arn": w.secret_arn, "endpoint_identifier": "orders-b"}], {},
            {"grants.1.engine"}, id="missing-engine",
        ),
        pytest.param(lambda w: [_grant(w, "orders-a"), "orders-b"], {}, {"grants.1"}, id="not-an-object"),
        pytest.param(lambda w: [], {}, {"grants"}, id="empty"),
        pytest.param(
            lambda w: [_grant(w, f"orders-{i}") for i in range(MAX_GRANTS + 1)], {}, {"grants"}, id="too-many"
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a"), _grant(w, "orders-a", "postgres", role_name="other-role")], {},
            {"grants.1.endpoint_identifier"}, id="duplicate-endpoint",
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a"), _grant(w, "ORDERS-A", "postgres", role_name="other-role")], {},
            {"grants.1.endpoint_identifier"}, id="duplicate-endpoint-other-case",
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a", role_name="shared-role"), _grant(w, "orders-b", role_name="shared-role")],
            {}, {"grants.1.role_name"}, id="duplicate-role",
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a", role_name="shared-role"), _grant(w, "orders-b", role_name="Shared-Role")],
            {}, {"grants.1.role_name"}, id="duplicate-role-other-case",
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a"), _grant(w, "orders-b", secret_arn=w.secret_arn.replace(REMOTE_ID, "333333333333"))],
            {}, {"grants.1.secret_arn"}, id="two-remote-accounts",
        ),
        pytest.param(
            lambda w: [_grant(w, "orders-a")], {"expires_at": timezone.now() - timedelta(days=1)},
            {"expires_at"}, id="expiry-in-the-past",
        ),
    ],
)
def test_a_broken_grant_files_nothing_and_names_the_grant(cast, portal_aws, grants, shared, errors):
    refused = _refused(cast, grants(portal_aws), **shared)
    assert set(refused) == errors, refused
    for messages in refused.values():
        assert messages and all(isinstance(m, str) and m for m in messages)


def test_a_missing_justification_is_reported_once(cast, portal_aws):
    world = portal_aws
    refused = _refused(cast, [_grant(world, f"orders-{i}") for i in range(3)], justification="")
    assert list(refused) == ["justification"] and len(refused["justification"]) == 1


def test_two_remote_accounts_name_both(cast, portal_aws):
    from tests.factories import RemoteAccountFactory

    RemoteAccountFactory(account_id="333333333333", name="Elsewhere", approvers=[cast.approver])
    world = portal_aws
    refused = _refused(
        cast, [_grant(world, "orders-a"), _grant(world, "orders-b", secret_arn=world.secret_arn.replace(REMOTE_ID, "333333333333"))]
    )
    assert list(refused) == ["grants.1.secret_arn"]
    assert REMOTE_ID in refused["grants.1.secret_arn"][0] and "333333333333" in refused["grants.1.secret_arn"][0]


def test_a_name_held_by_a_live_request_refuses_the_set(cast, portal_aws, django_capture_on_commit_callbacks):
    world = portal_aws
    with django_capture_on_commit_callbacks(execute=True):
        access_request_submit(
            requester=cast.requester, datalake_account_id=DATALAKE_ID, secret_arn=world.secret_arn, engine="mysql",
            endpoint_identifier="orders-b", justification="Alone.",
        )
    refused = _refused(cast, [_grant(world, "orders-a"), _grant(world, "orders-b", "postgres")])
    assert "grants.1.endpoint_identifier" in refused and not any(key.startswith("grants.0") for key in refused)
    assert "already held" in refused["grants.1.endpoint_identifier"][0]


def test_a_name_taken_at_the_same_moment_files_nothing_and_names_the_grant(
    cast, portal_aws, monkeypatch, django_capture_on_commit_callbacks
):
    """Another request takes grant 1's endpoint between the checks and the insert: the database's
    constraint refuses the set, and the error names the grant and the name."""
    from requests_app.services import request_sets

    world = portal_aws
    preflights = request_sets._preflights

    def then_taken(requester, cleaned):
        outcomes = preflights(requester, cleaned)
        cast.request(endpoint_identifier="orders-b", region=REGION, role_name="someone-elses-role")
        return outcomes

    monkeypatch.setattr(request_sets, "_preflights", then_taken)
    requests, events = AccessRequest.objects.count(), AuditEvent.objects.count()
    with pytest.raises(ValidationFailed) as refused:
        request_set_submit(
            requester=cast.requester, grants=[_grant(world, "orders-a"), _grant(world, "orders-b")],
            datalake_account_id=DATALAKE_ID, justification=JUSTIFICATION,
        )
    assert list(refused.value.errors) == ["grants.1.endpoint_identifier"]
    assert AccessRequest.objects.count() == requests + 1  # only the other request
    assert not RequestSet.objects.exists() and AuditEvent.objects.count() == events


def test_a_requester_of_another_datalake_account_files_nothing(cast, portal_aws):
    from tests.factories import UserFactory

    stranger = UserFactory(username="sven")
    before = AccessRequest.objects.count()
    with pytest.raises(NotAllowed):
        request_set_submit(
            requester=stranger, grants=[_grant(portal_aws, "orders-a")], datalake_account_id=DATALAKE_ID,
            justification=JUSTIFICATION,
        )
    assert AccessRequest.objects.count() == before and not RequestSet.objects.exists()


def test_a_grant_whose_preflight_fails_is_filed_with_its_diagnosis(cast, portal_aws, django_capture_on_commit_callbacks):
    world = portal_aws
    missing = f"arn:aws:secretsmanager:{REGION}:{REMOTE_ID}:secret:prod/missing-db-AbCdEf"
    request_set = _submit(
        cast, [_grant(world, "orders-a"), _grant(world, "orders-b", secret_arn=missing)], django_capture_on_commit_callbacks
    )
    first, second = request_set.grants.order_by("pk")
    assert first.preflight_status == AccessRequest.PreflightStatus.PASSED
    assert second.preflight_status == AccessRequest.PreflightStatus.FAILED and second.diagnosis
    assert "Preflight: 1 of 2 passed" in mail.outbox[0].body


# --- approving once --------------------------------------------------------------------------------------


def test_one_approval_approves_every_awaiting_grant(cast, portal_aws, django_capture_on_commit_callbacks, enqueued):
    world = portal_aws
    request_set = _two(cast, world, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    plan_hash = _hash(request_set)
    with django_capture_on_commit_callbacks(execute=True):
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=plan_hash, comment="fine")
    assert _states(request_set) == [RequestState.APPROVED, RequestState.APPROVED]
    grants = list(request_set.grants.order_by("pk"))
    for grant in grants:
        decision = Decision.objects.get(request=grant)
        assert (decision.approver, decision.outcome, decision.plan_hash) == (
            cast.approver, Decision.Outcome.APPROVE, grant.plan_hash
        )
        assert AuditEvent.objects.filter(request=grant, action="request.approved").count() == 1
    approved = AuditEvent.objects.get(action="request_set.approved")
    assert approved.actor == cast.approver
    assert approved.details["plan_hash"] == plan_hash and approved.details["requests"] == [g.pk for g in grants]
    assert _set_events(request_set) == ["request_set.submitted", "request_set.approved"]
    # One mail, to the requester.
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["dana@example.com"]
    assert "approved" in mail.outbox[0].subject and "2 grants" in mail.outbox[0].body
    assert sorted(request_id for request_id, _ in enqueued) == [g.pk for g in grants]
    assert verify_chain().ok
    # Nothing awaits any more: approving again is refused.
    with pytest.raises(InvalidTransition):
        request_set_approve(set_id=request_set.pk, user=cast.second_approver, plan_hash=plan_hash)


def test_with_a_quorum_of_two_the_second_approver_approves(cast, portal_aws, django_capture_on_commit_callbacks):
    world = portal_aws
    cast.remote.required_approvals = 2
    cast.remote.save()
    request_set = _two(cast, world, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    plan_hash = _hash(request_set)
    with django_capture_on_commit_callbacks(execute=True):
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=plan_hash)
    assert _states(request_set) == [RequestState.PENDING_APPROVAL] * 2
    assert len(mail.outbox) == 1 and "0 of its 2" in mail.outbox[0].subject
    # An approval does not change the plan; the same approver may not count twice.
    assert _hash(request_set) == plan_hash
    with pytest.raises((NotAllowed, InvalidTransition)):
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=plan_hash)
    with django_capture_on_commit_callbacks(execute=True):
        request_set_approve(set_id=request_set.pk, user=cast.second_approver, plan_hash=plan_hash)
    assert _states(request_set) == [RequestState.APPROVED] * 2
    assert Decision.objects.filter(request__request_set=request_set).count() == 4
    assert "was approved" in mail.outbox[-1].subject


def test_a_stale_hash_is_refused_after_one_grants_preflight_changed_the_plan(
    cast, portal_aws, django_capture_on_commit_callbacks
):
    world = portal_aws
    other = _other_secret(world)
    request_set = _submit(
        cast, [_grant(world, "orders-a"), _grant(world, "orders-b", secret_arn=other)], django_capture_on_commit_callbacks
    )
    seen = _hash(request_set)
    # The first grant's secret moves to another key; its refreshed preflight changes its plan.
    _reencrypt(world, _second_key(world))
    first = request_set.grants.order_by("pk").first()
    with django_capture_on_commit_callbacks(execute=True):
        access_request_refresh_preflight(request_id=first.pk, user=cast.requester)
    current = _hash(request_set)
    assert current != seen
    with pytest.raises(PlanChanged) as changed:
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=seen)
    assert changed.value.current_plan_hash == current
    assert _states(request_set) == [RequestState.PENDING_APPROVAL] * 2 and not Decision.objects.exists()
    with pytest.raises(PlanChanged):
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash="")
    request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=current)
    assert _states(request_set) == [RequestState.APPROVED] * 2


def test_a_stale_hash_is_refused_after_one_grant_was_cancelled(cast, portal_aws, django_capture_on_commit_callbacks):
    world = portal_aws
    request_set = _two(cast, world, django_capture_on_commit_callbacks)
    seen = _hash(request_set)
    first, second = request_set.grants.order_by("pk")
    access_request_cancel(request_id=first.pk, user=cast.requester)
    with pytest.raises(PlanChanged) as changed:
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=seen)
    assert changed.value.current_plan_hash == set_plan_hash([second]) != seen
    request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=changed.value.current_plan_hash)
    assert _states(request_set) == [RequestState.CANCELLED, RequestState.APPROVED]


def test_a_grant_whose_preflight_failed_blocks_the_whole_approval(cast, portal_aws, django_capture_on_commit_callbacks):
    world = portal_aws
    missing = f"arn:aws:secretsmanager:{REGION}:{REMOTE_ID}:secret:prod/missing-db-AbCdEf"
    request_set = _submit(
        cast, [_grant(world, "orders-a"), _grant(world, "orders-b", secret_arn=missing)], django_capture_on_commit_callbacks
    )
    failed = request_set.grants.order_by("pk").last()
    events = AuditEvent.objects.count()
    with pytest.raises(NotAllowed) as refused:
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=_hash(request_set))
    assert f"#{failed.pk}" in str(refused.value) and "orders-b" in str(refused.value)
    assert _states(request_set) == [RequestState.PENDING_APPROVAL] * 2
    assert not Decision.objects.exists() and AuditEvent.objects.count() == events


@pytest.mark.parametrize("approver_too", [False, True])
def test_the_requester_may_not_approve_their_own_set(cast, portal_aws, django_capture_on_commit_callbacks, approver_too):
    world = portal_aws
    if approver_too:
        cast.remote.approvers.add(cast.requester)
    request_set = _two(cast, world, django_capture_on_commit_callbacks)
    with pytest.raises(NotAllowed):
        request_set_approve(set_id=request_set.pk, user=cast.requester, plan_hash=_hash(request_set))
    # Refused for who they are, not for the plan: a stale hash is not answered with the current one.
    with pytest.raises(NotAllowed):
        request_set_approve(set_id=request_set.pk, user=cast.requester, plan_hash="stale")
    with pytest.raises(NotAllowed):
        request_set_approve(set_id=request_set.pk, user=cast.staff, plan_hash="stale")
    assert _states(request_set) == [RequestState.PENDING_APPROVAL] * 2 and not Decision.objects.exists()


def test_an_outsider_finds_no_set(cast, portal_aws, django_capture_on_commit_callbacks):
    request_set = _two(cast, portal_aws, django_capture_on_commit_callbacks)
    for call in (
        lambda: request_set_approve(set_id=request_set.pk, user=cast.outsider, plan_hash=_hash(request_set)),
        lambda: request_set_reject(set_id=request_set.pk, user=cast.outsider, comment="no"),
        lambda: request_set_revoke(set_id=request_set.pk, user=cast.outsider),
        lambda: request_set_approve(set_id=10**30, user=cast.approver, plan_hash="x"),
        lambda: request_set_approve(set_id="nope", user=cast.approver, plan_hash="x"),
    ):
        with pytest.raises(NotFoundForUser):
            call()


def test_a_grant_of_a_set_is_not_approved_alone(cast, portal_aws, django_capture_on_commit_callbacks):
    request_set = _two(cast, portal_aws, django_capture_on_commit_callbacks)
    grant = request_set.grants.order_by("pk").first()
    with pytest.raises(InvalidTransition, match=f"#{request_set.pk}"):
        access_request_approve(request_id=grant.pk, user=cast.approver, plan_hash=grant.plan_hash)
    # Who may not approve is told that first.
    with pytest.raises(NotAllowed):
        access_request_approve(request_id=grant.pk, user=cast.requester, plan_hash=grant.plan_hash)
    assert _states(request_set) == [RequestState.PENDING_APPROVAL] * 2 and not Decision.objects.exists()


def test_a_rule_approving_some_grants_changes_what_awaits_and_the_hash(
    cast, portal_aws, django_capture_on_commit_callbacks
):
    world = portal_aws
    adopt(cast, django_capture_on_commit_callbacks, engines=["mysql"])
    request_set = _two(cast, world, django_capture_on_commit_callbacks, expires_at=timezone.now() + timedelta(days=10))
    mysql, postgres = request_set.grants.order_by("pk")
    assert (mysql.state, postgres.state) == (RequestState.APPROVED, RequestState.PENDING_APPROVAL)
    assert awaiting_grants(request_set) == [postgres]
    submitted = AuditEvent.objects.get(action="request_set.submitted").details["plan_hash"]
    assert _hash(request_set) == set_plan_hash([postgres]) != submitted
    with pytest.raises(PlanChanged):
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=submitted)
    request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=_hash(request_set))
    assert _states(request_set) == [RequestState.APPROVED] * 2
    assert Decision.objects.filter(request=mysql).count() == 0  # the rule's, not the person's


# --- rejecting and revoking -------------------------------------------------------------------------------


def test_a_rejection_rejects_every_grant_awaiting_a_first_decision(
    cast, portal_aws, django_capture_on_commit_callbacks
):
    request_set = _two(cast, portal_aws, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    with pytest.raises(NotAllowed):
        request_set_reject(set_id=request_set.pk, user=cast.requester, comment="mine")
    with pytest.raises(ValidationFailed):
        request_set_reject(set_id=request_set.pk, user=cast.approver, comment="")
    with django_capture_on_commit_callbacks(execute=True):
        request_set_reject(set_id=request_set.pk, user=cast.approver, comment="Not these.")
    assert _states(request_set) == [RequestState.REJECTED] * 2
    assert Decision.objects.filter(request__request_set=request_set, outcome=Decision.Outcome.REJECT).count() == 2
    assert AuditEvent.objects.filter(action="request.rejected", request__request_set=request_set).count() == 2
    assert _set_events(request_set) == ["request_set.submitted", "request_set.rejected"]
    # The requester is told once, with the comment.
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["dana@example.com"]
    assert "rejected" in mail.outbox[0].subject and "Not these." in mail.outbox[0].body
    with pytest.raises(InvalidTransition):
        request_set_reject(set_id=request_set.pk, user=cast.approver, comment="again")


def test_revoking_revokes_only_the_revocable_grants(cast, portal_aws, django_capture_on_commit_callbacks):
    world = portal_aws
    request_set = _submit(
        cast, [_grant(world, f"orders-{name}") for name in ("a", "b", "c", "d")], django_capture_on_commit_callbacks
    )
    a, b, c, d = request_set.grants.order_by("pk")
    AccessRequest.objects.filter(pk=a.pk).update(state=RequestState.ACTIVE)
    AccessRequest.objects.filter(pk=b.pk).update(state=RequestState.FAILED)
    AccessRequest.objects.filter(pk=d.pk).update(state=RequestState.REVOKED)
    with pytest.raises(NotAllowed):
        request_set_revoke(set_id=request_set.pk, user=_datalake_only_viewer(cast))
    request_set_revoke(set_id=request_set.pk, user=cast.requester)
    assert _states(request_set) == [
        RequestState.REVOKING, RequestState.REVOKING, RequestState.PENDING_APPROVAL, RequestState.REVOKED
    ]
    assert AuditEvent.objects.filter(action="request.revoke_requested", request__in=[a, b]).count() == 2
    with pytest.raises(InvalidTransition):
        request_set_revoke(set_id=request_set.pk, user=cast.requester)


def _datalake_only_viewer(cast):
    """An approver of the DataLake account: sees the set, may revoke none of it."""
    from tests.factories import UserFactory

    viewer = UserFactory(username="dale")
    cast.datalake.approvers.add(viewer)
    return viewer
