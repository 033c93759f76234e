"""Who decides for an account changes through one service, whatever the way in.

``account_members_set`` is called by the admin, the API (PATCH
/api/v1/accounts/{account_id}/) and the command line (set_account_members):
each change is audited with before and after and the account's approvers
(before and after the change) are told. Nothing else writes the members.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.test import APIClient

from requests_app.errors import NotAllowed, ValidationFailed
from requests_app.models import AuditEvent, AwsAccount
from requests_app.services import account_members_set
from tests.factories import PlainStaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def members(account: AwsAccount) -> tuple[list[str], list[str], int]:
    account.refresh_from_db()
    return (
        sorted(account.approvers.values_list("username", flat=True)),
        sorted(account.requesters.values_list("username", flat=True)),
        account.required_approvals,
    )


def api(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


# --- the service --------------------------------------------------------------

# What the change left as it was: no groups, the default waiting rules.
UNCHANGED = {
    "approver_groups": [], "requester_groups": [], "approval_reminder_hours": 24, "escalate_after_hours": None,
    "escalation_groups": [], "escalation_users": [], "expire_pending_after_days": 14,
}


def test_a_change_is_audited_with_before_and_after_and_told_to_old_and_new_approvers(
    cast, mailoutbox, django_capture_on_commit_callbacks
):
    newcomer = UserFactory(username="nina", email="nina@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        account_members_set(
            actor=cast.staff, account_id="222222222222", approvers=["rami", "nina"], required_approvals=2,
            source_ip="10.1.1.1",
        )

    assert members(cast.remote) == (["nina", "rami"], [], 2)
    event = AuditEvent.objects.get(action="account.members_changed")
    assert (event.account, event.actor_label, event.source_ip) == (cast.remote, "sam", "10.1.1.1")
    assert event.details == {
        "before": {"approvers": ["rami", "rhea"], "requesters": [], "required_approvals": 1, **UNCHANGED},
        "after": {"approvers": ["nina", "rami"], "requesters": [], "required_approvals": 2, **UNCHANGED},
    }
    (message,) = mailoutbox
    # rhea, who was just removed, hears of it too; so does the newcomer.
    assert sorted(message.to) == sorted(["rami@example.com", "rhea@example.com", newcomer.email])
    assert "Approvers: nina, rami (were: rami, rhea)" in message.body
    assert "Required approvals: 2 (was: 1)" in message.body


def test_no_change_writes_nothing(cast, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        account_members_set(actor=cast.staff, account_id="222222222222", approvers=["rhea", "rami"])
    assert not AuditEvent.objects.filter(action="account.members_changed").exists()
    assert mailoutbox == []


def test_only_portal_administrators_change_members(cast):
    for who in (cast.approver, cast.outsider, PlainStaffFactory()):
        with pytest.raises(NotAllowed):
            account_members_set(actor=who, account_id="222222222222", approvers=["rami", "oscar"])
    assert members(cast.remote) == (["rami", "rhea"], [], 1)
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"approvers": ["nobody"]}, "approvers"),
        ({"requesters": ["dana"]}, "requesters"),  # the Remote account is not a DataLake account
        ({"required_approvals": 3}, "required_approvals"),  # two approvers only
        ({"required_approvals": 0}, "required_approvals"),
    ],
)
def test_bad_members_are_refused_by_name(cast, change, field):
    with pytest.raises(ValidationFailed) as refused:
        account_members_set(actor=cast.staff, account_id="222222222222", **change)
    assert field in refused.value.errors
    assert members(cast.remote) == (["rami", "rhea"], [], 1)


# --- the API ------------------------------------------------------------------


def test_a_portal_administrator_patches_an_accounts_members(cast):
    response = api(cast.staff).patch(
        "/api/v1/accounts/111111111111/", {"requesters": ["dana", "oscar"]}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["requesters"] == ["dana", "oscar"]
    assert members(cast.datalake) == ([], ["dana", "oscar"], 1)
    event = AuditEvent.objects.get(action="account.members_changed")
    assert event.details["before"]["requesters"] == ["dana"] and event.actor_label == "sam"


@pytest.mark.parametrize("who", ["approver", "outsider", "plain staff"])
def test_anyone_else_gets_403_before_the_body_is_read(cast, who):
    user = PlainStaffFactory() if who == "plain staff" else getattr(cast, who)
    for body in ({"approvers": ["rami", "oscar"]}, {"approvers": "not a list", "required_approvals": "many"}):
        response = api(user).patch("/api/v1/accounts/222222222222/", body, format="json")
        assert response.status_code == 403, response.content
        assert "errors" not in response.json()
    # Nor does an unknown account tell them anything more.
    assert api(user).patch("/api/v1/accounts/999999999999/", {}, format="json").status_code == 403
    assert members(cast.remote) == (["rami", "rhea"], [], 1)


def test_anonymous_gets_401(cast):
    assert api(None).patch("/api/v1/accounts/222222222222/", {}, format="json").status_code == 401


def test_an_unknown_account_is_404_and_bad_fields_400(cast):
    assert api(cast.staff).patch("/api/v1/accounts/999999999999/", {}, format="json").status_code == 404
    assert api(cast.staff).patch("/api/v1/accounts/not-an-id/", {}, format="json").status_code == 404
    refused = api(cast.staff).patch("/api/v1/accounts/222222222222/", {"required_approvals": 5}, format="json")
    assert refused.status_code == 400 and "required_approvals" in refused.json()["errors"]


# --- the command line -----------------------------------------------------------


def test_the_command_changes_members_as_the_console(cast, capsys, mailoutbox):
    call_command("set_account_members", "--account-id=222222222222", "--approvers=rhea", "--required-approvals=1")

    assert members(cast.remote) == (["rhea"], [], 1)
    event = AuditEvent.objects.get(action="account.members_changed")
    assert event.actor_id is None and event.actor_label.startswith("console")
    assert event.details["after"]["approvers"] == ["rhea"]
    assert "approvers rhea" in capsys.readouterr().out


def test_the_command_reports_a_refusal_and_changes_nothing(cast):
    with pytest.raises(CommandError) as refused:
        call_command("set_account_members", "--account-id=222222222222", "--approvers=ghost")
    assert "approvers:" in str(refused.value)
    with pytest.raises(CommandError):
        call_command("set_account_members", "--account-id=999999999999", "--approvers=")
    assert members(cast.remote) == (["rami", "rhea"], [], 1)


# --- the admin ------------------------------------------------------------------


def admin_form(account: AwsAccount, **changes) -> dict:
    form = {
        "account_id": account.account_id,
        "name": account.name,
        "is_datalake": "on" if account.is_datalake else "",
        "is_remote": "on" if account.is_remote else "",
        "provisioner_role_arn": account.provisioner_role_arn,
        "default_region": account.default_region,
        "approvers": [user.pk for user in account.approvers.all()],
        "requesters": [user.pk for user in account.requesters.all()],
        "required_approvals": str(account.required_approvals),
        "approval_reminder_hours": str(account.approval_reminder_hours or ""),
        "escalate_after_hours": str(account.escalate_after_hours or ""),
        "expire_pending_after_days": str(account.expire_pending_after_days),
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value != ""}


def test_the_admin_changes_members_through_the_service(cast, client, mailoutbox, django_capture_on_commit_callbacks):
    client.force_login(cast.staff)
    url = reverse("admin:requests_app_awsaccount_change", args=[cast.remote.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, admin_form(cast.remote, approvers=[cast.approver.pk], name="Remote (prod)"))

    assert response.status_code == 302, response.content.decode()[:3000]
    assert members(cast.remote) == (["rami"], [], 1)
    event = AuditEvent.objects.get(action="account.members_changed")
    assert event.details["before"]["approvers"] == ["rami", "rhea"]
    assert event.details["after"]["approvers"] == ["rami"]
    assert AuditEvent.objects.get(action="account.changed").details["changed_fields"] == ["name"]
    assert sorted(mailoutbox[0].to) == ["rami@example.com", "rhea@example.com"]


def test_the_admin_refuses_impossible_members_with_the_services_words(cast, client):
    client.force_login(cast.staff)
    url = reverse("admin:requests_app_awsaccount_change", args=[cast.remote.pk])
    response = client.post(url, admin_form(cast.remote, required_approvals="3"))
    assert response.status_code == 200
    assert b"no request could ever be approved" in response.content
    assert members(cast.remote) == (["rami", "rhea"], [], 1)


def test_plain_staff_cannot_change_or_add_accounts_in_the_admin(cast, client):
    staff = PlainStaffFactory()
    # Even holding Django's own model permissions: the account rules are the portal's.
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["change_awsaccount", "add_awsaccount"]))
    client.force_login(staff)
    url = reverse("admin:requests_app_awsaccount_change", args=[cast.remote.pk])
    assert client.post(url, admin_form(cast.remote, approvers=[cast.outsider.pk])).status_code == 403
    assert client.get(reverse("admin:requests_app_awsaccount_add")).status_code == 403
    assert members(cast.remote) == (["rami", "rhea"], [], 1)
