"""The detail page's grant panel: drift and repair, expiry and extensions, downloads."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import yaml
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from requests_app.models import AccessRequest, ExpiryExtension, RepairRequest, RequestState
from tests.requests_app.page_rows import make_accounts, make_request, make_users

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def site():
    users = make_users()
    return users, make_accounts(users)


@pytest.fixture
def grant(site) -> AccessRequest:
    """An active grant expiring in a week whose secret statement was removed (the finding's text is hostile)."""
    users, accounts = site
    request = make_request(users["requester"], accounts, state=RequestState.ACTIVE)
    request.expires_at = timezone.now().replace(second=0, microsecond=0) + timedelta(days=7)
    request.drift = {
        "drifted": True,
        "kinds": ["secret_statement_missing"],
        "findings": [{"kind": "secret_statement_missing", "resource": request.secret_arn, "message": HOSTILE}],
        "role_id": None,
        "aws_request_ids": [],
    }
    request.drift_checked_at = timezone.now()
    request.save()
    return request


def _client(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _page(client, request: AccessRequest) -> str:
    response = client.get(reverse("web:request_detail", args=[request.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _post(client, request: AccessRequest, action: str, data: dict | None = None):
    if action == "extend":
        url = reverse("web:request_extend", args=[request.pk])
    else:
        url = reverse("web:request_action", args=[request.pk, action])
    return client.post(url, data or {}, follow=True)


def _hidden(page: str, name: str) -> str:
    """The value of the page's hidden field ``name`` (the first one)."""
    return re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', page).group(1)


def test_the_requester_sees_the_drift_escaped_and_can_repair_extend_and_download(site, grant):
    users, _ = site
    page = _page(_client(users["requester"]), grant)
    assert 'id="drift"' in page and "secret_statement_missing" in page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # The secret statement was removed in the Remote account: the requester may only ask.
    assert 'value="repair"' in page and "Ask the Remote approvers to repair" in page
    assert 'id="remote-drift"' in page
    assert reverse("web:request_extend", args=[grant.pk]) in page
    for fmt in ("cloudformation", "json", "cli"):
        assert reverse("web:request_export", args=[grant.pk, fmt]) in page
    assert 'value="extension_approve"' not in page


def test_a_datalake_approver_sees_the_grant_but_no_buttons(site, grant):
    users, accounts = site
    accounts["datalake"].approvers.add(users["outsider"])
    page = _page(_client(users["outsider"]), grant)
    assert "secret_statement_missing" in page
    assert 'value="repair"' not in page
    assert reverse("web:request_extend", args=[grant.pk]) not in page
    assert reverse("web:request_export", args=[grant.pk, "json"]) in page


def test_repair_from_the_page_starts_the_grant_steps_again(site, grant):
    users, _ = site
    assert "Repair: put the statements back" in _page(_client(users["approver"]), grant)
    response = _post(_client(users["approver"]), grant, "repair")
    assert "Repair started" in response.content.decode()
    assert AccessRequest.objects.get(pk=grant.pk).state == RequestState.PROVISIONING


def test_a_repair_asked_on_the_page_waits_for_an_approver(site, grant):
    users, _ = site
    asked = _post(_client(users["requester"]), grant, "repair")
    page = asked.content.decode()
    assert AccessRequest.objects.get(pk=grant.pk).state == RequestState.ACTIVE
    assert 'id="pending-repair"' in page and 'value="repair_approve"' not in page
    assert HOSTILE not in page
    approver = _client(users["approver"])
    page = _page(approver, grant)
    assert 'id="pending-repair"' in page and 'value="repair_approve"' in page and 'value="repair_reject"' in page
    assert 'value="repair"' not in page  # the approver decides the ask instead
    refused = _post(approver, grant, "repair_reject")
    assert "A comment is required" in refused.content.decode()
    assert RepairRequest.objects.get(request=grant).state == RepairRequest.State.PENDING
    _post(approver, grant, "repair_approve", {"comment": "Put it back.", "plan_hash": grant.plan_hash})
    assert AccessRequest.objects.get(pk=grant.pk).state == RequestState.PROVISIONING
    assert RepairRequest.objects.get(request=grant).state == RepairRequest.State.APPROVED


def test_a_requester_repairs_datalake_drift_from_the_page(site, grant):
    users, _ = site
    grant.drift = {"drifted": True, "kinds": ["endpoint_missing"],
                   "findings": [{"kind": "endpoint_missing", "resource": "source-db", "message": "gone"}]}
    grant.save(update_fields=["drift"])
    client = _client(users["requester"])
    page = _page(client, grant)
    assert "Repair the DataLake role and endpoint" in page and 'id="remote-drift"' not in page
    _post(client, grant, "repair")
    assert AccessRequest.objects.get(pk=grant.pk).state == RequestState.PROVISIONING


def test_an_extension_asked_on_the_page_is_approved_by_an_approver(site, grant):
    users, _ = site
    new_expiry = grant.expires_at + timedelta(days=30)
    asked = _post(_client(users["requester"]), grant, "extend", {
        "expires_at": new_expiry.strftime("%Y-%m-%dT%H:%M"), "justification": f"Longer migration {HOSTILE}",
    })
    assert "waits for the approvers" in asked.content.decode()
    approver = _client(users["approver"])
    page = _page(approver, grant)
    assert 'id="pending-extension"' in page and 'value="extension_approve"' in page
    assert HOSTILE not in page
    _post(approver, grant, "extension_approve", {"plan_hash": _hidden(page, "plan_hash")})
    assert AccessRequest.objects.get(pk=grant.pk).expires_at == new_expiry
    assert ExpiryExtension.objects.get(request=grant).state == ExpiryExtension.State.APPROVED


def test_rejecting_an_extension_on_the_page_needs_a_comment(site, grant):
    users, _ = site
    _post(_client(users["requester"]), grant, "extend", {
        "expires_at": (grant.expires_at + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")})
    approver = _client(users["approver"])
    refused = _post(approver, grant, "extension_reject")
    assert "A comment is required" in refused.content.decode()
    assert ExpiryExtension.objects.get(request=grant).state == ExpiryExtension.State.PENDING
    _post(approver, grant, "extension_reject", {"comment": "Not now."})
    assert ExpiryExtension.objects.get(request=grant).state == ExpiryExtension.State.REJECTED
    assert AccessRequest.objects.get(pk=grant.pk).expires_at == grant.expires_at


def test_refusals_on_the_page(site, grant):
    users, _ = site
    earlier = _post(_client(users["requester"]), grant, "extend", {
        "expires_at": (grant.expires_at - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")})
    assert "Could not ask for a later expiry" in earlier.content.decode()
    assert not ExpiryExtension.objects.filter(request=grant).exists()
    # The approver may see the grant but not ask for the requester.
    not_theirs = _post(_client(users["approver"]), grant, "extend", {
        "expires_at": (grant.expires_at + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")})
    assert "Only the requester" in not_theirs.content.decode()
    outsider = _client(users["outsider"])
    assert outsider.post(reverse("web:request_action", args=[grant.pk, "repair"])).status_code == 404
    assert outsider.get(reverse("web:request_export", args=[grant.pk, "json"])).status_code == 404
    pending = make_request(users["requester"], site[1])
    refused = _post(_client(users["requester"]), pending, "repair")
    assert "only an active grant can be repaired" in refused.content.decode()
    assert AccessRequest.objects.get(pk=pending.pk).state == RequestState.PENDING_APPROVAL


def test_the_lifecycle_forms_need_the_csrf_token(site, grant):
    users, _ = site
    client = _client(users["requester"], csrf=True)
    assert client.post(reverse("web:request_action", args=[grant.pk, "repair"])).status_code == 403
    assert client.post(reverse("web:request_extend", args=[grant.pk]), {"expires_at": "2099-01-01T00:00"}).status_code == 403
    assert AccessRequest.objects.get(pk=grant.pk).state == RequestState.ACTIVE


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"),
    [("cloudformation", "application/yaml", "yaml"), ("json", "application/json", "json"), ("cli", "text/x-shellscript", "sh")],
)
def test_the_downloads_are_attachments(site, grant, fmt, content_type, extension):
    users, _ = site
    response = _client(users["approver"]).get(reverse("web:request_export", args=[grant.pk, fmt]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Content-Disposition"].endswith(f'.{extension}"')
    if fmt == "cloudformation":
        (role,) = yaml.safe_load(response.content)["Resources"].values()
        assert role["Properties"]["RoleName"] == grant.role_name


def test_an_unknown_download_format_is_not_found(site, grant):
    users, _ = site
    assert _client(users["requester"]).get(reverse("web:request_export", args=[grant.pk, "terraform"])).status_code == 404
