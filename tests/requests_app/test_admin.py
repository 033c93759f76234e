"""The Django admin: accounts editable and audited, requests read-mostly, audit events read-only."""
from __future__ import annotations

import pytest
from django.urls import reverse

from requests_app.audit import record_event
from requests_app.models import AccessRequest, AuditEvent, AwsAccount, RequestState


@pytest.fixture
def event(cast):
    from django.db import transaction

    with transaction.atomic():
        return record_event(action="account.registered", account=cast.remote, actor_label="console")


def test_audit_events_can_be_read_but_not_added_changed_or_deleted(admin_client, event):
    assert admin_client.get(reverse("admin:requests_app_auditevent_changelist")).status_code == 200
    page = admin_client.get(reverse("admin:requests_app_auditevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert admin_client.get(reverse("admin:requests_app_auditevent_add")).status_code == 403
    changed = admin_client.post(
        reverse("admin:requests_app_auditevent_change", args=[event.pk]), {"actor_label": "mallory"}
    )
    assert changed.status_code == 403
    assert admin_client.post(reverse("admin:requests_app_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    bulk = admin_client.post(
        reverse("admin:requests_app_auditevent_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "console"


def test_requests_are_read_only_and_state_changes_only_through_the_services(admin_client, admin_user, cast, enqueued):
    cast.remote.approvers.add(admin_user)
    active = cast.request(state=RequestState.ACTIVE)
    pending = cast.request()
    assert admin_client.get(reverse("admin:requests_app_accessrequest_changelist")).status_code == 200
    page = admin_client.get(reverse("admin:requests_app_accessrequest_change", args=[active.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(
        reverse("admin:requests_app_accessrequest_change", args=[active.pk]), {"state": "revoked"}
    ).status_code == 403
    assert admin_client.get(reverse("admin:requests_app_accessrequest_add")).status_code == 403

    admin_client.post(
        reverse("admin:requests_app_accessrequest_changelist"),
        {"action": "revoke_selected", "_selected_action": [active.pk, pending.pk]},
        REMOTE_ADDR="10.2.2.2",
    )
    assert AccessRequest.objects.get(pk=active.pk).state == RequestState.REVOKING
    assert AccessRequest.objects.get(pk=pending.pk).state == RequestState.PENDING_APPROVAL  # refused: not active
    event = AuditEvent.objects.get(request=active)
    assert (event.action, event.actor_label, event.source_ip) == ("request.revoke_requested", "admin", "10.2.2.2")


def test_an_account_added_in_the_admin_is_checked_and_audited(admin_client, cast):
    url = reverse("admin:requests_app_awsaccount_add")
    form = {
        "account_id": "333333333333",
        "name": "Analytics",
        "is_remote": "on",
        "provisioner_role_arn": "arn:aws:iam::444444444444:role/portal",
        "default_region": "eu-west-1",
        "required_approvals": "1",
        "approval_reminder_hours": "24",
        "expire_pending_after_days": "14",
        "approvers": [cast.approver.pk],
    }
    refused = admin_client.post(url, form)
    assert refused.status_code == 200
    assert b"Must be a role in account 333333333333 itself" in refused.content
    assert not AwsAccount.objects.filter(account_id="333333333333").exists()

    form["provisioner_role_arn"] = "arn:aws:iam::333333333333:role/portal"
    refused = admin_client.post(url, form)
    assert refused.status_code == 200 and b"needs the external id" in refused.content
    assert not AwsAccount.objects.filter(account_id="333333333333").exists()

    form["new_external_id"] = "analytics-external-id"
    assert admin_client.post(url, form).status_code == 302
    account = AwsAccount.objects.get(account_id="333333333333")
    event = AuditEvent.objects.get(account=account)
    assert (event.action, event.actor_label, event.details["approvers"]) == ("account.registered", "admin", ["rami"])
    assert admin_client.get(reverse("admin:requests_app_awsaccount_delete", args=[account.pk])).status_code == 403
