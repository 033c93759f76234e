"""Approver and requester groups: who may do what, quorum, lists, and where they are set.

Groups are Django groups; at each single sign-on their membership follows
the identity provider (tests/requests_app/test_sso_groups.py and, with the
real provider, tests/e2e/test_sso.py).
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from requests_app import permissions
from requests_app.errors import NotAllowed, ValidationFailed
from requests_app.models import AuditEvent, AwsAccount, RequestState
from requests_app.selectors import (
    approval_queue_for,
    audit_events_visible_to,
    dashboard_counts_for,
    requests_visible_to,
)
from requests_app.services import access_request_approve, account_members_set
from tests.factories import DecisionFactory, UserFactory


@pytest.fixture
def approvers_group(cast):
    group = Group.objects.create(name="remote-approvers")
    cast.remote.approver_groups.add(group)
    return group


def test_a_member_of_an_approver_group_approves_and_loses_it_with_the_group(cast, approvers_group, enqueued):
    gale = UserFactory(username="gale")
    request = cast.request()
    assert not permissions.can_approve(gale, request)

    gale.groups.add(approvers_group)
    gale = type(gale).objects.get(pk=gale.pk)  # a new request, a new user object
    assert permissions.is_approver_for(gale, cast.remote)
    assert permissions.can_view(gale, request)
    access_request_approve(request_id=request.pk, user=gale, plan_hash=request.plan_hash)
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED

    gale.groups.remove(approvers_group)
    gale = type(gale).objects.get(pk=gale.pk)
    assert not permissions.is_approver_for(gale, cast.remote)
    assert not permissions.can_view(gale, request)


def test_a_member_of_a_requester_group_files_for_the_account(cast):
    gus = UserFactory(username="gus")
    assert not permissions.can_file(gus)
    group = Group.objects.create(name="datalake-requesters")
    cast.datalake.requester_groups.add(group)
    gus.groups.add(group)
    assert permissions.can_file(gus)
    assert permissions.can_file_for(gus, cast.datalake)
    assert not permissions.can_file_for(gus, cast.remote)


def test_quorum_counts_each_person_once_however_they_are_listed(cast, approvers_group, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    # rami is listed by name and through the group: still one person.
    cast.approver.groups.add(approvers_group)
    request = cast.request()
    access_request_approve(request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash)
    request.refresh_from_db()
    assert request.state == RequestState.PENDING_APPROVAL
    assert approval_queue_for(user=cast.second_approver).get(pk=request.pk).current_approvals == 1

    gale = UserFactory(username="gale")
    gale.groups.add(approvers_group)
    access_request_approve(request_id=request.pk, user=gale, plan_hash=request.plan_hash)
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED
    assert AuditEvent.objects.get(action="request.approved").details["approvals"] == 2


def test_an_approval_by_someone_no_longer_in_the_group_does_not_count(cast, approvers_group, enqueued):
    cast.remote.required_approvals = 2
    cast.remote.save()
    gale = UserFactory(username="gale")
    request = cast.request()
    DecisionFactory(request=request, approver=gale)  # approved while in the group, then left it
    access_request_approve(request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash)
    request.refresh_from_db()
    assert request.state == RequestState.PENDING_APPROVAL


def test_requester_through_one_group_and_approver_through_another_cannot_approve_their_own(cast, approvers_group):
    filers = Group.objects.create(name="datalake-requesters")
    cast.datalake.requester_groups.add(filers)
    both = UserFactory(username="bo")
    both.groups.add(filers, approvers_group)
    request = cast.request(requester=both)

    assert permissions.is_approver_for(both, cast.remote)
    assert not permissions.can_approve(both, request)
    with pytest.raises(NotAllowed):
        access_request_approve(request_id=request.pk, user=both, plan_hash=request.plan_hash)
    assert not approval_queue_for(user=both).filter(pk=request.pk).exists()
    request.refresh_from_db()
    assert request.state == RequestState.PENDING_APPROVAL and not request.decisions.exists()


def test_lists_include_group_approvers_in_a_fixed_number_of_queries(cast, approvers_group, django_assert_max_num_queries):
    gale = UserFactory(username="gale")
    gale.groups.add(approvers_group)
    for count in (3, 30):
        while len(requests_visible_to(user=cast.requester)) < count:
            cast.request()
        gale = type(gale).objects.get(pk=gale.pk)
        permissions.is_portal_admin(gale)
        with django_assert_max_num_queries(2):
            assert len(list(requests_visible_to(user=gale))) == count
        with django_assert_max_num_queries(2):
            queue = [(r.requester.username, r.current_approvals) for r in approval_queue_for(user=gale)]
        assert len(queue) == count
        with django_assert_max_num_queries(2):
            assert len(list(audit_events_visible_to(user=gale))) == 0
        with django_assert_max_num_queries(4):
            assert dashboard_counts_for(user=gale)["awaiting_my_approval"] == count


def test_the_queue_page_answers_every_rows_buttons_in_a_fixed_number_of_queries(
    cast, approvers_group, client, django_assert_max_num_queries
):
    gale = UserFactory(username="gale")
    gale.groups.add(approvers_group)
    client.force_login(gale)
    for _ in range(3):
        cast.request()
    client.get(reverse("web:approval_queue"))
    with django_assert_max_num_queries(40) as few:
        client.get(reverse("web:approval_queue"))
    for _ in range(12):
        cast.request()
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("web:approval_queue"))
    assert response.content.count(b'name="plan_hash"') == 15


def test_the_service_sets_groups_audited_and_refuses_unknown_ones(cast, approvers_group, mailoutbox,
                                                                 django_capture_on_commit_callbacks):
    Group.objects.create(name="datalake-requesters")
    with django_capture_on_commit_callbacks(execute=True):
        account_members_set(actor=cast.staff, account_id=cast.datalake.account_id,
                            requester_groups=["datalake-requesters"])
    assert list(cast.datalake.requester_groups.values_list("name", flat=True)) == ["datalake-requesters"]
    event = AuditEvent.objects.get(action="account.members_changed")
    assert event.details["before"]["requester_groups"] == []
    assert event.details["after"]["requester_groups"] == ["datalake-requesters"]

    with pytest.raises(ValidationFailed) as refused:
        account_members_set(actor=cast.staff, account_id=cast.remote.account_id, approver_groups=["nope"])
    assert refused.value.errors == {"approver_groups": ["No group named nope."]}
    with pytest.raises(ValidationFailed) as refused:
        account_members_set(actor=cast.staff, account_id=cast.remote.account_id, requester_groups=["datalake-requesters"])
    assert "requester_groups" in refused.value.errors  # a Remote-only account has no requesters
    with pytest.raises(NotAllowed):
        account_members_set(actor=cast.approver, account_id=cast.remote.account_id, approver_groups=[])


def test_the_api_shows_and_takes_groups(cast, approvers_group):
    admin, reader = APIClient(), APIClient()
    admin.force_authenticate(cast.staff)
    reader.force_authenticate(cast.outsider)
    url = f"/api/v1/accounts/{cast.remote.account_id}/"
    Group.objects.create(name="remote-leads")

    response = admin.patch(url, {"approver_groups": ["remote-approvers", "remote-leads"]}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["approver_groups"] == ["remote-approvers", "remote-leads"]
    listed = {a["account_id"]: a for a in reader.get("/api/v1/accounts/").json()}
    assert listed[cast.remote.account_id]["approver_groups"] == ["remote-approvers", "remote-leads"]
    assert listed[cast.remote.account_id]["approvers"] == ["rami", "rhea"]
    assert reader.patch(url, {"approver_groups": []}, format="json").status_code == 403

    response = admin.post(
        "/api/v1/accounts/",
        {
            "account_id": "333333333333", "name": "Analytics", "is_remote": True,
            "provisioner_role_arn": "arn:aws:iam::333333333333:role/dms-access-portal-provisioner",
            "external_id": "analytics-external-id", "approver_groups": ["remote-leads"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["approver_groups"] == ["remote-leads"]
    assert AuditEvent.objects.get(action="account.registered").details["approver_groups"] == ["remote-leads"]


def test_the_accounts_page_shows_groups(cast, approvers_group, client):
    client.force_login(cast.outsider)
    response = client.get(reverse("web:accounts"))
    assert "group remote-approvers" in response.content.decode()


def test_the_commands_take_groups(cast, approvers_group, capsys):
    Group.objects.create(name="remote-leads")
    call_command(
        "register_account", "--account-id", "333333333333", "--name", "Analytics", "--remote",
        "--provisioner-role-arn", "arn:aws:iam::333333333333:role/dms-access-portal-provisioner",
        "--external-id", "analytics-external-id", "--approver-group", "remote-leads,remote-approvers",
    )
    account = AwsAccount.objects.get(account_id="333333333333")
    assert sorted(account.approver_groups.values_list("name", flat=True)) == ["remote-approvers", "remote-leads"]

    call_command("set_account_members", "--account-id", "333333333333", "--approver-groups", "remote-leads")
    assert list(account.approver_groups.values_list("name", flat=True)) == ["remote-leads"]
    assert "approver groups remote-leads" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No group named ghosts"):
        call_command("set_account_members", "--account-id", "333333333333", "--approver-groups", "ghosts")
