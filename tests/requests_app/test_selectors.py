"""Who sees which requests and events, and in how many queries."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from requests_app import permissions
from requests_app.audit import record_event
from requests_app.errors import NotFoundForUser
from requests_app.models import AccessRequest, RequestState
from requests_app.selectors import (
    approval_queue_for,
    audit_events_visible_to,
    dashboard_counts_for,
    request_detail_for,
    requests_visible_to,
)
from requests_app.services import access_request_approve
from tests.factories import (
    AccessRequestFactory,
    DataLakeAccountFactory,
    DecisionFactory,
    RemoteAccountFactory,
    UserFactory,
)


def _ids(queryset) -> list[int]:
    return [row.pk for row in queryset]


def test_each_person_sees_what_can_view_allows(cast):
    mine = cast.request()
    other_remote = RemoteAccountFactory(approvers=[UserFactory()])
    elsewhere = AccessRequestFactory(datalake_account=cast.datalake, remote_account=other_remote)
    datalake_approver = UserFactory()
    cast.datalake.approvers.add(datalake_approver)

    assert set(_ids(requests_visible_to(user=cast.requester))) == {mine.pk}
    assert set(_ids(requests_visible_to(user=cast.approver))) == {mine.pk}
    assert set(_ids(requests_visible_to(user=datalake_approver))) == {mine.pk, elsewhere.pk}
    assert set(_ids(requests_visible_to(user=cast.staff))) == {mine.pk, elsewhere.pk}
    assert _ids(requests_visible_to(user=cast.outsider)) == []
    # The list and the permission rule agree, row by row.
    for user in (cast.requester, cast.approver, datalake_approver, cast.staff, cast.outsider):
        visible = set(_ids(requests_visible_to(user=user)))
        for request in AccessRequest.objects.all():
            assert (request.pk in visible) == permissions.can_view(user, request)


def test_a_request_is_listed_once_even_when_the_viewer_approves_both_accounts(cast):
    cast.datalake.approvers.add(cast.approver)
    request = cast.request()
    assert _ids(requests_visible_to(user=cast.approver)) == [request.pk]


def test_the_approval_queue_is_oldest_first_and_leaves_out_what_is_not_for_me(cast):
    now = timezone.now()
    newer = cast.request()
    older = cast.request()
    AccessRequest.objects.filter(pk=older.pk).update(created_at=now - timedelta(hours=3))
    AccessRequest.objects.filter(pk=newer.pk).update(created_at=now - timedelta(hours=1))
    cast.request(state=RequestState.ACTIVE)
    cast.datalake.requesters.add(cast.approver)
    cast.request(requester=cast.approver)  # their own
    decided = cast.request()
    DecisionFactory(request=decided, approver=cast.approver)

    assert _ids(approval_queue_for(user=cast.approver)) == [older.pk, newer.pk]
    queue_of_second = approval_queue_for(user=cast.second_approver)
    assert [(r.pk, r.current_approvals) for r in queue_of_second][-1] == (decided.pk, 1)
    assert _ids(approval_queue_for(user=cast.requester)) == []


def test_detail_is_refused_as_not_found_to_those_who_may_not_see_it(cast):
    request = cast.request()
    with pytest.raises(NotFoundForUser):
        request_detail_for(user=cast.outsider, request_id=request.pk)
    with pytest.raises(NotFoundForUser):
        request_detail_for(user=cast.requester, request_id=request.pk + 99)
    assert request_detail_for(user=cast.requester, request_id=request.pk) == request


def test_detail_answers_the_page_and_its_buttons_in_a_fixed_number_of_queries(
    cast, enqueued, django_assert_max_num_queries
):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = cast.request()
    access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    # Twelve: the request, its decisions, steps, events, pending extension and
    # repair, both accounts' approvers and approver groups, and the user's
    # permissions (is_portal_admin: read once per user, not per row).
    with django_assert_max_num_queries(12):
        detail = request_detail_for(user=cast.second_approver, request_id=request.pk)
        actions = permissions.allowed_actions(cast.second_approver, detail)
        decisions = [(d.approver.username, d.outcome) for d in detail.decisions.all()]
        events = [e.action for e in detail.audit_events.all()]
        steps = list(detail.steps.all())
    assert actions == {"approve", "reject"}
    assert decisions == [("rami", "approve")]
    assert events == ["decision.approve"]
    assert steps == []
    assert permissions.allowed_actions(cast.approver, detail) == set()  # already approved this plan


def _many(cast, count: int) -> None:
    for _ in range(count):
        request = cast.request()
        DecisionFactory(request=request, approver=cast.second_approver)


@pytest.mark.parametrize("count", [3, 30])
def test_lists_take_a_fixed_number_of_queries_whatever_their_length(cast, django_assert_max_num_queries, count):
    _many(cast, count)
    with transaction.atomic():
        for request in AccessRequest.objects.all():
            record_event(action="test.event", actor=cast.requester, request=request)
    datalake_approver = UserFactory()
    cast.datalake.approvers.add(datalake_approver)

    # One query for the rows, and one for the ids of the accounts the user approves for;
    # whether the user administers the portal is read once per user (its permissions
    # and its groups'), whatever the length of the lists.
    for user in (cast.requester, cast.approver, datalake_approver, cast.staff):
        with django_assert_max_num_queries(2):
            permissions.is_portal_admin(user)
        with django_assert_max_num_queries(2):
            rows = [(r.requester.username, r.datalake_account.name, r.remote_account.name) for r in requests_visible_to(user=user)]
        assert len(rows) == count
        with django_assert_max_num_queries(2):
            events = [(e.action, e.account.name if e.account else "") for e in audit_events_visible_to(user=user)]
        assert len(events) == count
    with django_assert_max_num_queries(2):
        queue = [(r.requester.username, r.remote_account.name, r.current_approvals) for r in approval_queue_for(user=cast.approver)]
    assert len(queue) == count and {approvals for *_, approvals in queue} == {1}
    with django_assert_max_num_queries(4):
        counts = dashboard_counts_for(user=cast.approver)
    assert counts["visible"]["pending_approval"] == count
    assert counts["awaiting_my_approval"] == count


def test_dashboard_counts(cast):
    cast.request()
    cast.request(state=RequestState.ACTIVE)
    cast.request(state=RequestState.FAILED)
    counts = dashboard_counts_for(user=cast.requester)
    assert counts["mine"] == {**{state: 0 for state in RequestState.values}, "pending_approval": 1, "active": 1, "failed": 1}
    assert counts["awaiting_my_approval"] == 0
    assert dashboard_counts_for(user=cast.approver)["awaiting_my_approval"] == 1
    assert dashboard_counts_for(user=cast.outsider)["visible"]["active"] == 0


def test_audit_events_are_scoped_like_requests_and_filterable(cast):
    mine = cast.request()
    other = AccessRequestFactory(datalake_account=DataLakeAccountFactory(), remote_account=RemoteAccountFactory())
    with transaction.atomic():
        record_event(action="request.submitted", actor=cast.requester, request=mine)
        record_event(action="request.submitted", actor=other.requester, request=other)
        record_event(action="account.registered", account=cast.remote, actor_label="console")
        record_event(action="account.registered", account=other.remote_account, actor_label="console")

    seen = [(e.action, e.request_id) for e in audit_events_visible_to(user=cast.approver)]
    assert seen == [("account.registered", None), ("request.submitted", mine.pk)]
    assert len(audit_events_visible_to(user=cast.staff)) == 4
    assert list(audit_events_visible_to(user=cast.outsider)) == []
    assert [e.request_id for e in audit_events_visible_to(user=cast.staff, request_id=other.pk)] == [other.pk]
    assert len(audit_events_visible_to(user=cast.staff, account_id="222222222222")) == 2
    assert len(audit_events_visible_to(user=cast.staff, actor="console")) == 2
    later = timezone.now() + timedelta(minutes=1)
    assert list(audit_events_visible_to(user=cast.staff, since=later)) == []
    assert len(audit_events_visible_to(user=cast.staff, until=later)) == 4
