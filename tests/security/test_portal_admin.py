"""Portal administration is the ``administer_portal`` permission, not ``is_staff``.

Staff without it get the Django admin as far as Django's model permissions
go, and in the portal what any other user gets; holders of the permission
(directly, through the "Portal administrators" group, or as superusers)
administer the portal.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from requests_app import permissions
from requests_app.models import AccessRequest, AuditEvent, AwsAccount, RequestState
from tests.factories import AccessRequestFactory, PlainStaffFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

REGISTER = {
    "account_id": "444444444444",
    "name": "Analytics",
    "is_datalake": True,
    "provisioner_role_arn": "arn:aws:iam::444444444444:role/dms-access-portal-provisioner",
}


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_migration_makes_a_group_that_holds_the_permission():
    group = Group.objects.get(name="Portal administrators")
    assert list(group.permissions.values_list("codename", flat=True)) == ["administer_portal"]


def test_who_is_a_portal_administrator():
    member = UserFactory()
    member.groups.add(Group.objects.get(name="Portal administrators"))
    superuser = UserFactory(is_superuser=True)
    inactive = StaffFactory(is_active=False)

    assert permissions.is_portal_admin(member)  # not even staff
    assert permissions.is_portal_admin(superuser)
    assert permissions.is_portal_admin(StaffFactory())
    assert not permissions.is_portal_admin(PlainStaffFactory())
    assert not permissions.is_portal_admin(inactive)
    assert not permissions.is_portal_admin(UserFactory())


def test_staff_alone_is_an_ordinary_user_in_the_portal():
    staff = PlainStaffFactory()
    request = AccessRequestFactory(state=RequestState.ACTIVE)
    failed = AccessRequestFactory(state=RequestState.FAILED)
    client = api(staff)

    assert client.post("/api/v1/accounts/", REGISTER, format="json").status_code == 403
    assert not AwsAccount.objects.filter(account_id="444444444444").exists()
    assert client.get(f"/api/v1/requests/{request.pk}/").status_code == 404
    assert client.get("/api/v1/requests/").json()["results"] == []
    assert client.post(f"/api/v1/requests/{request.pk}/revoke/").status_code == 404
    assert client.post(f"/api/v1/requests/{failed.pk}/retry/").status_code == 404
    assert AccessRequest.objects.get(pk=request.pk).state == RequestState.ACTIVE
    assert AccessRequest.objects.get(pk=failed.pk).state == RequestState.FAILED


def test_a_group_member_administers_the_portal_without_being_staff():
    member = UserFactory()
    member.groups.add(Group.objects.get(name="Portal administrators"))

    response = api(member).post("/api/v1/accounts/", REGISTER, format="json")

    assert response.status_code == 201, response.content
    assert AuditEvent.objects.get(action="account.registered").actor_label == member.username


def test_staff_alone_sees_the_admin_only_as_model_permissions_allow():
    staff = PlainStaffFactory()
    request = AccessRequestFactory(state=RequestState.ACTIVE)
    browser = Client()
    browser.force_login(staff)

    assert browser.get(reverse("admin:index")).status_code == 200
    for name in ("awsaccount", "accessrequest", "auditevent"):
        assert browser.get(reverse(f"admin:requests_app_{name}_changelist")).status_code == 403
    assert browser.get(reverse("admin:requests_app_awsaccount_add")).status_code == 403

    # Given only Django's view permission on requests, no break-glass action comes with it.
    staff.user_permissions.add(Permission.objects.get(codename="view_accessrequest"))
    browser.force_login(staff)
    page = browser.get(reverse("admin:requests_app_accessrequest_changelist"))
    assert page.status_code == 200 and b"revoke_selected" not in page.content
    browser.post(
        reverse("admin:requests_app_accessrequest_changelist"),
        {"action": "revoke_selected", "_selected_action": [request.pk]},
    )
    assert AccessRequest.objects.get(pk=request.pk).state == RequestState.ACTIVE


def test_a_portal_administrator_gets_the_break_glass_actions():
    browser = Client()
    browser.force_login(StaffFactory())
    AccessRequestFactory(state=RequestState.ACTIVE)
    page = browser.get(reverse("admin:requests_app_accessrequest_changelist"))
    assert page.status_code == 200 and b"revoke_selected" in page.content
