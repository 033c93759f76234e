"""Nothing waits forever: reminders, escalation and expiry of requests pending approval,
and where people see them (request page, approval queue, dashboard, API)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from requests_app.workflow import tasks
from requests_app.errors import InvalidTransition
from requests_app.models import AccessRequest, AuditEvent, RequestState
from requests_app.selectors import oldest_pending_by_account
from requests_app.services import access_request_approve, account_members_set
from requests_app.services.waiting import pending_approvals_tend
from tests.factories import AccessRequestFactory, RemoteAccountFactory, UserFactory

pytestmark = pytest.mark.django_db


def filed(cast, hours_ago: float = 0, **fields) -> AccessRequest:
    request = cast.request(**fields)
    created = timezone.now() - timedelta(hours=hours_ago)
    AccessRequest.objects.filter(pk=request.pk).update(created_at=created)
    request.refresh_from_db()
    return request


def tend(at, capture):
    with capture(execute=True):
        return pending_approvals_tend(now=at)


@pytest.fixture
def leads(cast):
    """rhea's boss kim and the group "remote-leads" (with lou in it) are told after 36 hours."""
    group = Group.objects.create(name="remote-leads")
    lou = UserFactory(username="lou")
    lou.groups.add(group)
    kim = UserFactory(username="kim")
    account_members_set(
        actor=cast.staff, account_id=cast.remote.account_id, escalate_after_hours=36,
        escalation_groups=["remote-leads"], escalation_users=["kim"],
    )
    return {"group": group, "lou": lou, "kim": kim}


def test_approvers_are_reminded_every_n_hours_and_each_reminder_is_audited(
    cast, mailoutbox, django_capture_on_commit_callbacks
):
    approvers = Group.objects.create(name="remote-approvers")
    cast.remote.approver_groups.add(approvers)
    gale = UserFactory(username="gale")
    gale.groups.add(approvers)
    request = filed(cast)
    start = request.created_at

    assert tend(start + timedelta(hours=23, minutes=59), django_capture_on_commit_callbacks)["reminded"] == []
    assert mailoutbox == []
    assert tend(start + timedelta(hours=24), django_capture_on_commit_callbacks)["reminded"] == [request.pk]
    assert sorted(mailoutbox[0].to) == ["gale@example.com", "rami@example.com", "rhea@example.com"]
    assert "still awaits your approval" in mailoutbox[0].subject
    # Not again until another 24 hours passed since that reminder, however often beat runs.
    assert tend(start + timedelta(hours=47), django_capture_on_commit_callbacks)["reminded"] == []
    assert tend(start + timedelta(hours=48), django_capture_on_commit_callbacks)["reminded"] == [request.pk]
    request.refresh_from_db()
    assert request.approval_reminders == 2
    events = AuditEvent.objects.filter(action="request.approval_reminder_sent", request=request)
    assert [event.details["reminder"] for event in events] == [1, 2]
    assert events[0].details["to"] == ["gale", "rami", "rhea"]
    assert len(mailoutbox) == 2


def test_an_account_sets_its_own_reminder_interval_or_none(cast, django_capture_on_commit_callbacks):
    account_members_set(actor=cast.staff, account_id=cast.remote.account_id, approval_reminder_hours=4)
    request = filed(cast)
    assert tend(request.created_at + timedelta(hours=4), django_capture_on_commit_callbacks)["reminded"] == [request.pk]
    account_members_set(actor=cast.staff, account_id=cast.remote.account_id, approval_reminder_hours=0)
    assert tend(request.created_at + timedelta(hours=100), django_capture_on_commit_callbacks)["reminded"] == []


def test_a_request_is_escalated_once_to_the_accounts_groups_and_people_without_its_secrets(
    cast, leads, mailoutbox, django_capture_on_commit_callbacks
):
    request = filed(cast)
    assert tend(request.created_at + timedelta(hours=35), django_capture_on_commit_callbacks)["escalated"] == []
    mailoutbox.clear()
    assert tend(request.created_at + timedelta(hours=36), django_capture_on_commit_callbacks)["escalated"] == [request.pk]
    escalation = next(mail for mail in mailoutbox if "escalated" in mail.subject)
    assert sorted(escalation.to) == ["kim@example.com", "lou@example.com"]
    # The people told may not see the request: the message names it, not its secret.
    assert request.secret_arn not in escalation.body and request.justification not in escalation.body
    assert "rami, rhea" in escalation.body
    request.refresh_from_db()
    assert request.escalated_to == ["group remote-leads", "kim"]
    event = AuditEvent.objects.get(action="request.escalated")
    assert event.details["to"] == ["group remote-leads", "kim"] and event.details["told"] == ["kim", "lou"]

    assert tend(request.created_at + timedelta(hours=80), django_capture_on_commit_callbacks)["escalated"] == []
    assert AuditEvent.objects.filter(action="request.escalated").count() == 1
    # Being told gives no right to decide, nor to read the request.
    from requests_app import permissions

    assert not permissions.can_approve(leads["kim"], request) and not permissions.can_view(leads["lou"], request)


def test_escalation_needs_someone_to_escalate_to(cast):
    from requests_app.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        account_members_set(actor=cast.staff, account_id=cast.remote.account_id, escalate_after_hours=12)
    assert "escalate_after_hours" in refused.value.errors


def test_a_request_still_pending_after_k_days_expires_and_the_requester_is_told(
    cast, mailoutbox, django_capture_on_commit_callbacks, enqueued
):
    request = filed(cast)
    waiting = filed(cast)  # another one, younger
    AccessRequest.objects.filter(pk=waiting.pk).update(created_at=request.created_at + timedelta(days=1))
    at = request.created_at + timedelta(days=14)
    assert tend(at - timedelta(minutes=1), django_capture_on_commit_callbacks)["expired"] == []
    mailoutbox.clear()
    assert tend(at, django_capture_on_commit_callbacks)["expired"] == [request.pk]
    request.refresh_from_db()
    assert request.state == RequestState.EXPIRED and request.completed_at == at
    assert [mail.to for mail in mailoutbox if "expired" in mail.subject] == [["dana@example.com"]]
    event = AuditEvent.objects.get(action="request.expired_unanswered")
    assert (event.details["from_state"], event.details["to_state"]) == ("pending_approval", "expired")
    assert AccessRequest.objects.get(pk=waiting.pk).state == RequestState.PENDING_APPROVAL

    # Expired is final: no approval brings it back, and it frees its names.
    with pytest.raises(InvalidTransition):
        access_request_approve(request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash)
    AccessRequestFactory(
        requester=cast.requester, datalake_account=cast.datalake, remote_account=cast.remote,
        endpoint_identifier=request.endpoint_identifier, role_name=request.role_name,
    )


def test_an_account_sets_its_own_expiry(cast, django_capture_on_commit_callbacks):
    account_members_set(actor=cast.staff, account_id=cast.remote.account_id, expire_pending_after_days=2)
    request = filed(cast)
    assert tend(request.created_at + timedelta(days=2), django_capture_on_commit_callbacks)["expired"] == [request.pk]


def test_only_requests_pending_approval_are_tended(cast, django_capture_on_commit_callbacks):
    request = filed(cast, hours_ago=24 * 30)
    AccessRequest.objects.filter(pk=request.pk).update(state=RequestState.NEEDS_REAPPROVAL)
    assert tend(timezone.now(), django_capture_on_commit_callbacks) == {"reminded": [], "escalated": [], "expired": []}


def test_the_database_knows_the_expired_state(cast):
    request = filed(cast)
    AccessRequest.objects.filter(pk=request.pk).update(state=RequestState.EXPIRED)
    with pytest.raises(IntegrityError), transaction.atomic():
        AccessRequest.objects.filter(pk=request.pk).update(state="lapsed")


def test_beat_runs_the_sweep_as_a_task(cast, django_capture_on_commit_callbacks):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "requests.tend_pending" in schedule
    filed(cast, hours_ago=24 * 15)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.tend_pending() == {"approved_by_rules": 0, "reminded": 0, "escalated": 0, "expired": 1}


def test_the_request_page_says_how_long_it_waited_and_who_was_told(
    cast, leads, client, django_capture_on_commit_callbacks
):
    request = filed(cast, hours_ago=50)
    for hours in (24, 36, 48):
        tend(request.created_at + timedelta(hours=hours), django_capture_on_commit_callbacks)
    client.force_login(cast.requester)
    page = client.get(reverse("web:request_detail", args=[request.pk])).content.decode()
    assert "Waiting 2 days 2 hours for approval; approvers reminded twice; escalated to group remote-leads, kim" in page

    AccessRequest.objects.filter(pk=request.pk).update(
        state=RequestState.EXPIRED, completed_at=request.created_at + timedelta(days=14)
    )
    page = client.get(reverse("web:request_detail", args=[request.pk])).content.decode()
    assert "Expired unanswered after 14 days; approvers reminded twice" in page
    assert 'class="badge state-expired"' in page


def test_the_queue_shows_the_wait_and_the_escalation(cast, leads, client, django_capture_on_commit_callbacks):
    old = filed(cast, hours_ago=40)
    fresh = filed(cast, hours_ago=1)
    tend(timezone.now(), django_capture_on_commit_callbacks)
    client.force_login(cast.approver)
    page = client.get(reverse("web:approval_queue")).content.decode()
    old_row = page[page.index(f'data-request="{old.pk}"'):]
    old_row = old_row[: old_row.index("</tr>")]
    fresh_row = page[page.index(f'data-request="{fresh.pk}"'):]
    fresh_row = fresh_row[: fresh_row.index("</tr>")]
    assert "escalated to group remote-leads, kim" in old_row and "reminded 1×" in old_row
    assert "escalated" not in fresh_row and "1\xa0hour" in fresh_row


def test_the_dashboard_shows_each_accounts_oldest_pending_request(cast, client):
    other = RemoteAccountFactory(name="Other remote", approvers=[cast.approver])
    unrelated = RemoteAccountFactory(name="Not mine", approvers=[cast.second_approver])
    oldest = filed(cast, hours_ago=30)
    filed(cast, hours_ago=2)
    other_oldest = filed(cast, hours_ago=5, remote_account=other)
    filed(cast, hours_ago=50, remote_account=unrelated)

    assert [r.pk for r in oldest_pending_by_account(user=cast.approver)] == [oldest.pk, other_oldest.pk]
    client.force_login(cast.approver)
    page = client.get(reverse("web:dashboard")).content.decode()
    section = page[page.index('id="oldest-pending"'):]
    assert f'data-request="{oldest.pk}"' in section and f'data-request="{other_oldest.pk}"' in section
    assert "Not mine" not in section
    client.force_login(cast.requester)
    assert 'id="oldest-pending"' not in client.get(reverse("web:dashboard")).content.decode()


def test_the_api_shows_reminders_and_escalation_and_the_expired_state(cast, leads, django_capture_on_commit_callbacks):
    request = filed(cast)
    tend(request.created_at + timedelta(hours=36), django_capture_on_commit_callbacks)
    client = APIClient()
    client.force_authenticate(cast.requester)
    body = client.get(f"/api/v1/requests/{request.pk}/").json()
    assert body["approval_reminders"] == 1
    assert body["escalated_to"] == ["group remote-leads", "kim"] and body["escalated_at"]
    tend(request.created_at + timedelta(days=14), django_capture_on_commit_callbacks)
    assert client.get(f"/api/v1/requests/{request.pk}/").json()["state"] == "expired"
    assert [r["id"] for r in client.get("/api/v1/requests/?state=expired").json()["results"]] == [request.pk]
    admin = APIClient()
    admin.force_authenticate(cast.staff)
    account = admin.get("/api/v1/accounts/").json()
    remote = next(a for a in account if a["account_id"] == cast.remote.account_id)
    assert (remote["approval_reminder_hours"], remote["escalate_after_hours"], remote["expire_pending_after_days"]) == (24, 36, 14)
    assert (remote["escalation_groups"], remote["escalation_users"]) == (["remote-leads"], ["kim"])
    response = admin.patch(f"/api/v1/accounts/{cast.remote.account_id}/", {"expire_pending_after_days": 0}, format="json")
    assert response.status_code == 400


def test_the_command_sets_the_waiting_rules(cast, capsys):
    from django.core.management import call_command

    UserFactory(username="kim")
    call_command(
        "set_account_members", "--account-id", cast.remote.account_id, "--remind-after-hours", "6",
        "--escalate-after-hours", "12", "--escalation-users", "kim", "--expire-after-days", "3",
    )
    cast.remote.refresh_from_db()
    assert (cast.remote.approval_reminder_hours, cast.remote.escalate_after_hours, cast.remote.expire_pending_after_days) == (6, 12, 3)
    assert list(cast.remote.escalation_users.values_list("username", flat=True)) == ["kim"]
    event = AuditEvent.objects.get(action="account.members_changed")
    assert event.details["before"]["approval_reminder_hours"] == 24 and event.details["after"]["approval_reminder_hours"] == 6
    call_command("set_account_members", "--account-id", cast.remote.account_id, "--escalate-after-hours", "0")
    cast.remote.refresh_from_db()
    assert cast.remote.escalate_after_hours is None


def test_the_grants_of_a_request_set_are_each_tended_and_told_once_for_the_set(
    cast, leads, mailoutbox, django_capture_on_commit_callbacks
):
    from requests_app.models import RequestSet

    request_set = RequestSet.objects.create(
        requester=cast.requester, datalake_account=cast.datalake, remote_account=cast.remote, justification="x"
    )
    grants = [filed(cast, request_set=request_set) for _ in range(3)]
    start = grants[0].created_at
    set_url = reverse("web:request_set_detail", args=[request_set.pk])

    outcomes = tend(start + timedelta(hours=37), django_capture_on_commit_callbacks)
    assert outcomes["reminded"] == outcomes["escalated"] == [grant.pk for grant in grants]
    # Each grant's reminder and escalation audited; one mail each, naming the set and its grants.
    for action in ("request.approval_reminder_sent", "request.escalated"):
        assert AuditEvent.objects.filter(action=action, request__request_set=request_set).count() == 3
    reminders = [mail for mail in mailoutbox if "still awaits your approval" in mail.subject]
    escalations = [mail for mail in mailoutbox if "escalated" in mail.subject]
    assert len(reminders) == len(escalations) == 1 and len(mailoutbox) == 2
    assert f"Request set #{request_set.pk}" in reminders[0].subject and set_url in reminders[0].body
    assert all(f"Request #{grant.pk}:" in reminders[0].body for grant in grants)
    assert f"Request set #{request_set.pk}" in escalations[0].subject

    mailoutbox.clear()
    outcomes = tend(start + timedelta(days=cast.remote.expire_pending_after_days, hours=1), django_capture_on_commit_callbacks)
    assert outcomes["expired"] == [grant.pk for grant in grants]
    [expired] = mailoutbox
    assert expired.to == [cast.requester.email] and f"Request set #{request_set.pk}" in expired.subject
    assert all(f"Request #{grant.pk}:" in expired.body for grant in grants)
