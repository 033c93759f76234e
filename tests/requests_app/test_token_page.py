"""The API tokens page and the admin's view of tokens: a person makes (shown
once) and revokes their own tokens; staff list and revoke, never make one."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from requests_app.models import ApiToken, AuditEvent
from tests.factories import StaffFactory, UserFactory, api_token_for

pytestmark = pytest.mark.django_db

PAGE = "/tokens/"


def _works(token: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/v1/tokens/").status_code == 200


def _shown_token(html: str) -> str:
    found = re.search(r'value="(dmsap_[0-9a-f]+)"', html)
    return found.group(1) if found else ""


def test_a_person_makes_a_token_sees_it_once_and_revokes_it(client):
    riley = UserFactory(username="riley")
    client.force_login(riley)

    made = client.post(PAGE, {"name": "my script", "expires_days": "14"})

    assert made.status_code == 200
    token = _shown_token(made.content.decode())
    assert token and _works(token)
    assert "no-store" in made["Cache-Control"]
    row = ApiToken.objects.get(user=riley)
    assert row.name == "my script"
    # Shown once: the list page afterwards names it but never shows it.
    again = client.get(PAGE).content.decode()
    assert "my script" in again and token not in again and token[:15] not in again

    revoked = client.post(reverse("web:api_token_revoke", args=[row.pk]), follow=True)

    assert "revoked" in revoked.content.decode()
    assert token not in revoked.content.decode()
    assert not _works(token)
    assert AuditEvent.objects.filter(action="token.revoked", actor_label="riley").exists()


def test_the_form_says_what_is_wrong(client):
    riley = UserFactory(username="riley")
    client.force_login(riley)
    api_token_for(riley, name="taken")

    for data in ({"name": "taken", "expires_days": "5"}, {"name": "ok", "expires_days": "9999"}, {"name": "", "expires_days": "5"}):
        response = client.post(PAGE, data)
        assert response.status_code == 400
        assert 'value="dmsap_' not in response.content.decode()
    assert ApiToken.objects.filter(user=riley).count() == 1


def test_nobody_revokes_someone_elses_token_on_the_page(client):
    owner, other = UserFactory(username="owner"), UserFactory(username="other")
    token = api_token_for(owner, name="owner's")
    client.force_login(other)

    response = client.post(reverse("web:api_token_revoke", args=[ApiToken.objects.get(user=owner).pk]))

    assert response.status_code == 404
    assert _works(token)


def test_a_page_never_takes_a_token_for_a_signed_in_person(client):
    token = api_token_for(UserFactory(username="riley"), name="scripted")

    response = client.post(PAGE, {"name": "minted", "expires_days": "5"}, HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 302 and "/auth/login/" in response["Location"]
    assert not ApiToken.objects.filter(name="minted").exists()


def test_the_admin_lists_and_revokes_tokens_but_never_makes_one(admin_client):
    riley = UserFactory(username="riley")
    token = api_token_for(riley, name="leaked")
    row = ApiToken.objects.get(user=riley)

    listing = admin_client.get(reverse("admin:requests_app_apitoken_changelist"))
    assert listing.status_code == 200 and "leaked" in listing.content.decode()
    detail = admin_client.get(reverse("admin:requests_app_apitoken_change", args=[row.pk]))
    assert detail.status_code == 200
    for page in (listing, detail):
        assert token not in page.content.decode() and row.digest not in page.content.decode()
    assert admin_client.get(reverse("admin:requests_app_apitoken_add")).status_code == 403
    # Neither DRF's authtoken admin nor knox's own (which makes tokens for any user) is there.
    assert admin_client.get("/admin/authtoken/").status_code == 404
    assert admin_client.get("/admin/knox/").status_code == 404
    assert admin_client.post(reverse("admin:requests_app_apitoken_delete", args=[row.pk]), {"post": "yes"}).status_code == 403

    revoked = admin_client.post(
        reverse("admin:requests_app_apitoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [row.pk]},
        follow=True,
    )

    assert "Revoked 1 token" in revoked.content.decode()
    assert not _works(token)
    event = AuditEvent.objects.get(action="token.revoked")
    assert event.actor_label == "admin" and event.details["owner"] == "riley"


def test_staff_without_the_permission_cannot_revoke_in_the_admin(client):
    staff = StaffFactory(username="helpdesk")
    token = api_token_for(UserFactory(username="riley"), name="kept")
    client.force_login(staff)

    response = client.post(
        reverse("admin:requests_app_apitoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [ApiToken.objects.get(name="kept").pk]},
    )

    assert response.status_code == 403
    assert _works(token)


def test_the_audit_log_says_which_token_acted(client):
    riley = UserFactory(username="riley")
    token = api_token_for(riley, name="rotation-bot")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.delete(f"/api/v1/tokens/{ApiToken.objects.get(user=riley).pk}/").status_code == 200
    client.force_login(StaffFactory(username="auditor"))

    page = client.get("/audit/").content.decode()

    assert "with token “rotation-bot”" in page and token not in page
