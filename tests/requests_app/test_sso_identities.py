"""Whom a single sign-on identity signs in as, and administrators' pre-links.

The flow itself, through a real provider and browser, is in tests/e2e/test_sso.py;
these cover the matching rules and the admin directly.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db import IntegrityError, transaction
from django.test import RequestFactory
from django.urls import reverse

from requests_app.errors import NotAllowed, SsoLoginRefused, ValidationFailed
from requests_app.models import AuditEvent, SsoIdentity
from requests_app.services.sso import sso_identity_remove, sso_identity_save, sso_login
from tests.factories import PlainStaffFactory, StaffFactory, UserFactory

ISSUER = "https://sso.example.test"

pytestmark = pytest.mark.django_db


def login(subject: str, issuer: str = ISSUER, **claims):
    return sso_login(issuer=issuer, subject=subject, claims={"sub": subject, **claims}, source_ip="10.9.9.9")


def refusal_reason(subject: str, **claims) -> str:
    with pytest.raises(SsoLoginRefused) as refused:
        login(subject, **claims)
    return refused.value.reason


def test_a_first_login_creates_a_user_without_a_password_and_binds_it():
    user = login("s-1", preferred_username="kim", email="kim@corp.example", email_verified=True, given_name="Kim")
    assert (user.username, user.email, user.first_name) == ("kim", "kim@corp.example", "Kim")
    assert not user.has_usable_password() and not user.is_staff
    assert SsoIdentity.objects.get(issuer=ISSUER, subject="s-1").user == user
    event = AuditEvent.objects.get(action="sso.linked")
    assert (event.actor_id, event.source_ip) == (user.pk, "10.9.9.9")
    assert event.details == {"user": "kim", "issuer": ISSUER, "subject": "s-1", "via": "new_user"}


def test_later_logins_match_issuer_and_subject_only():
    kim = login("s-1", preferred_username="kim")
    UserFactory(username="kimberly")
    assert login("s-1", preferred_username="kimberly", email="kimberly@example.com", email_verified=True) == kim
    # The same subject at another issuer is another person.
    other = login("s-1", issuer="https://other.example.test", preferred_username="kim2")
    assert other != kim
    assert AuditEvent.objects.filter(action="sso.linked").count() == 2


@pytest.mark.parametrize("claims", [
    {"preferred_username": "omar"},
    {"preferred_username": "OMAR"},
    {"email": "omar", "email_verified": True},
])
def test_a_claim_naming_an_existing_user_is_refused_not_linked(claims):
    omar = StaffFactory(username="omar", email="omar@corp.example")
    assert refusal_reason("s-x", **claims) == "username_taken"
    assert not SsoIdentity.objects.exists()
    assert omar.sso_identities.count() == 0


def test_an_existing_users_email_signs_in_as_a_new_user_named_otherwise():
    omar = StaffFactory(username="omar", email="omar@corp.example")
    user = login("s-x", preferred_username="mallory", email="omar@corp.example", email_verified=True)
    assert user != omar and user.username == "mallory"


@pytest.mark.parametrize("claims, username", [
    ({"preferred_username": "оmar"}, None),  # a Cyrillic "о": not derived from
    ({"preferred_username": "a b"}, None),
    ({"email": "pat@corp.example", "email_verified": False}, None),
    ({"email": "pat@corp.example", "email_verified": "false"}, None),
    ({"email": "pat@corp.example", "email_verified": "true"}, "pat@corp.example"),
    ({"email": "pat@corp.example"}, None),
])
def test_new_user_names_are_ascii_and_use_only_a_verified_email(claims, username):
    user = login("s-2", **claims)
    if username is None:
        assert user.username.startswith("sso-") and len(user.username) == 20
        assert user.email == ""
    else:
        assert user.username == username


def test_an_email_pre_link_links_the_first_login_with_that_verified_email():
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    pat = UserFactory(username="pat")
    sso_identity_save(actor=admin, user=pat, issuer=ISSUER, expected_email="pat@corp.example")
    assert login("s-u", preferred_username="pat.u", email="pat@corp.example", email_verified=False) != pat
    assert login("s-v", preferred_username="pat.v", email="PAT@corp.example", email_verified=True) == pat
    assert SsoIdentity.objects.get(user=pat).subject == "s-v"
    assert login("s-v") == pat


@pytest.mark.parametrize("protected", [{"is_staff": True}, {"is_superuser": True}, {"password": "usable"}])
def test_an_email_pre_link_never_links_staff_or_users_with_a_password(protected):
    if "password" in protected:
        user = UserFactory(username="lee")
        user.set_password("a-local-password")
        user.save()
    else:
        user = UserFactory(username="lee", **protected)
    SsoIdentity.objects.create(user=user, issuer=ISSUER, expected_email="lee@corp.example")
    assert refusal_reason("s-l", email="lee@corp.example", email_verified=True) == "email_prelink_to_protected_user"
    assert SsoIdentity.objects.get(user=user).subject == ""


def test_a_subject_pre_link_links_even_a_superuser_and_is_audited_once():
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    sso_identity_save(actor=root, user=root, issuer=ISSUER, subject="s-root")
    assert login("s-root", preferred_username="whoever") == root
    assert login("s-root") == root
    assert [e.details["via"] for e in AuditEvent.objects.filter(action="sso.linked")] == ["expected_subject"]


def test_a_deactivated_user_is_refused():
    user = login("s-1", preferred_username="kim")
    user.is_active = False
    user.save()
    assert refusal_reason("s-1") == "inactive_user"


def test_issuer_and_subject_are_unique_together():
    SsoIdentity.objects.create(user=UserFactory(), issuer=ISSUER, subject="s-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        SsoIdentity.objects.create(user=UserFactory(), issuer=ISSUER, subject="s-1")
    SsoIdentity.objects.create(user=UserFactory(), issuer="https://other.example.test", subject="s-1")


# --- Pre-links by administrators ------------------------------------------------


def test_only_a_superuser_links_staff_and_email_pre_links_are_for_plain_users():
    staff = StaffFactory(username="helpdesk")
    other_staff = StaffFactory(username="ops")
    plain = UserFactory(username="pat")
    with pytest.raises(NotAllowed):
        sso_identity_save(actor=staff, user=other_staff, issuer=ISSUER, subject="s-ops")
    with pytest.raises(NotAllowed):
        sso_identity_save(actor=plain, user=plain, issuer=ISSUER, subject="s-pat")
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    with pytest.raises(ValidationFailed) as failed:
        sso_identity_save(actor=root, user=other_staff, issuer=ISSUER, expected_email="ops@corp.example")
    assert "expected_email" in failed.value.errors
    sso_identity_save(actor=staff, user=plain, issuer=ISSUER, subject="s-pat")
    assert not SsoIdentity.objects.exclude(user=plain).exists()


def test_changes_and_removals_are_audited_with_before_and_after():
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    pat = UserFactory(username="pat")
    identity = sso_identity_save(actor=root, user=pat, issuer=ISSUER, subject="s-old", source_ip="10.1.1.1")
    login("s-old")
    sso_identity_save(actor=root, identity_id=identity.pk, user=pat, issuer=ISSUER, subject="s-new")
    identity.refresh_from_db()
    assert identity.linked_at is None  # the newly named subject has not signed in yet
    assert login("s-new") == pat
    sso_identity_remove(actor=root, identity_id=identity.pk)
    events = {e.action: e for e in AuditEvent.objects.exclude(action="sso.linked")}
    assert events["sso.prelinked"].details["subject"] == "s-old"
    assert events["sso.prelinked"].source_ip == "10.1.1.1"
    changed = events["sso.link_changed"].details
    assert (changed["before"]["subject"], changed["after"]["subject"]) == ("s-old", "s-new")
    assert events["sso.unlinked"].details["subject"] == "s-new"
    assert not SsoIdentity.objects.exists()


def test_the_admin_pre_links_through_the_service(admin_client, settings):
    settings.OIDC_OP_ISSUER = ISSUER
    pat = UserFactory(username="pat")
    add = reverse("admin:requests_app_ssoidentity_add")
    assert f'value="{ISSUER}"'.encode() in admin_client.get(add).content
    response = admin_client.post(add, {"user": pat.pk, "issuer": ISSUER, "subject": "", "expected_email": "pat@corp.example"})
    assert response.status_code == 302
    identity = SsoIdentity.objects.get(user=pat)
    assert AuditEvent.objects.get(action="sso.prelinked").details["expected_email"] == "pat@corp.example"

    change = reverse("admin:requests_app_ssoidentity_change", args=[identity.pk])
    admin_client.post(change, {"user": pat.pk, "issuer": ISSUER, "subject": "s-pat", "expected_email": ""})
    assert AuditEvent.objects.get(action="sso.link_changed").details["after"]["subject"] == "s-pat"
    admin_client.post(reverse("admin:requests_app_ssoidentity_delete", args=[identity.pk]), {"post": "yes"})
    assert AuditEvent.objects.filter(action="sso.unlinked").count() == 1 and not SsoIdentity.objects.exists()


def test_the_admin_refuses_what_the_service_would(client):
    helpdesk = StaffFactory(username="helpdesk")
    helpdesk.user_permissions.add(*Permission.objects.filter(codename__endswith="_ssoidentity"))
    client.force_login(helpdesk)
    ops = StaffFactory(username="ops")
    lee = UserFactory(username="lee")
    lee.set_password("a-local-password")
    lee.save()
    add = reverse("admin:requests_app_ssoidentity_add")
    staff_link = client.post(add, {"user": ops.pk, "issuer": ISSUER, "subject": "s-ops", "expected_email": ""})
    assert staff_link.status_code == 200 and b"Only a superuser" in staff_link.content
    email_link = client.post(add, {"user": lee.pk, "issuer": ISSUER, "subject": "", "expected_email": "lee@corp.example"})
    assert email_link.status_code == 200 and b"link them by subject" in email_link.content
    assert not SsoIdentity.objects.exists() and not AuditEvent.objects.exists()
    # A link of a staff user made by a superuser is not theirs to change or remove.
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    identity = sso_identity_save(actor=root, user=ops, issuer=ISSUER, subject="s-ops")
    change = reverse("admin:requests_app_ssoidentity_change", args=[identity.pk])
    client.post(change, {"user": lee.pk, "issuer": ISSUER, "subject": "s-ops", "expected_email": ""})
    client.post(reverse("admin:requests_app_ssoidentity_delete", args=[identity.pk]), {"post": "yes"})
    assert SsoIdentity.objects.get(pk=identity.pk).user == ops


# --- The backend's checks of the id token -------------------------------------------


@pytest.fixture
def backend(settings):
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_RP_CLIENT_SECRET = "client-secret"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{ISSUER}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{ISSUER}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{ISSUER}/jwks"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_OP_ISSUER = ISSUER
    from requests_app.web.oidc import PortalOIDCBackend

    backend = PortalOIDCBackend()
    backend.request = RequestFactory().get("/oidc/callback/")
    return backend


@pytest.mark.parametrize("payload, userinfo_sub", [
    ({"iss": "https://evil.example.test", "aud": "portal", "sub": "s-1"}, "s-1"),
    ({"iss": ISSUER, "aud": "another-client", "sub": "s-1"}, "s-1"),
    ({"iss": ISSUER, "aud": ["portal"], "sub": ""}, ""),
    ({"iss": ISSUER, "aud": "portal", "sub": "s-1"}, "s-2"),
])
def test_the_backend_refuses_tokens_for_another_issuer_audience_or_subject(backend, monkeypatch, payload, userinfo_sub):
    monkeypatch.setattr(backend, "get_userinfo", lambda *args: {"sub": userinfo_sub, "preferred_username": "kim"})
    assert backend.get_or_create_user("access", "id", payload) is None
    assert backend.request.sso_refusal.startswith("Single sign-on did not sign you in")
    assert not SsoIdentity.objects.exists()
    monkeypatch.setattr(backend, "get_userinfo", lambda *args: {"sub": "s-1", "preferred_username": "kim"})
    assert backend.get_or_create_user("access", "id", {"iss": ISSUER, "aud": ["portal", "x"], "sub": "s-1"}).username == "kim"


def test_operators_pre_link_from_the_command_line(settings):
    from django.core.management import CommandError, call_command

    settings.OIDC_OP_ISSUER = ISSUER
    ops = StaffFactory(username="ops")
    call_command("sso_prelink", "ops", "--subject", "s-ops")
    assert login("s-ops") == ops
    event = AuditEvent.objects.get(action="sso.prelinked")
    assert event.actor_label.startswith("console") and event.details["subject"] == "s-ops"
    with pytest.raises(CommandError, match="link them by subject"):
        call_command("sso_prelink", "ops", "--email", "ops@corp.example", "--issuer", "https://other.example.test")
    with pytest.raises(CommandError, match="No user"):
        call_command("sso_prelink", "nobody", "--subject", "s-1")


def test_staff_without_the_portal_permission_link_nobody(client):
    # Linking decides whom an identity signs in as: a portal administrator's
    # power, not something the model permissions of the admin hand out.
    helpdesk = PlainStaffFactory(username="helpdesk")
    helpdesk.user_permissions.set(Permission.objects.filter(codename__endswith="_ssoidentity"))
    client.force_login(helpdesk)
    lee = UserFactory(username="lee")
    added = client.post(
        reverse("admin:requests_app_ssoidentity_add"),
        {"user": lee.pk, "issuer": ISSUER, "subject": "s-lee", "expected_email": ""},
    )
    assert added.status_code == 200 and not SsoIdentity.objects.exists()
