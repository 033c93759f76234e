"""Brute force against the logins: repeated failures lock out the user name and,
separately, the address, on the portal's login page, Django admin and the
single sign-on callback; only an administrator lifts a lockout early, and that
is audited."""
from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory

from requests_app.errors import NotAllowed
from requests_app.models import AuditEvent
from requests_app.services import login_lockout_reset

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-and-good-password-1"
LIMIT = 3
LOGIN = "/auth/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def low_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def dana(db):
    return get_user_model().objects.create_user("dana", password=PASSWORD)


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_user("ada", password=PASSWORD, is_staff=True, is_superuser=True)


def _login(path: str, username: str, password: str, *, address: str = "198.51.100.7"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(path, {"username": username, "password": password})
    return response, client


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("path", [LOGIN, ADMIN_LOGIN])
def test_a_user_name_is_locked_out_after_repeated_failures_from_any_address(path, dana, admin_user):
    user = "ada" if path == ADMIN_LOGIN else "dana"
    statuses = [_login(path, user, "wrong", address=f"198.51.100.{n + 1}")[0].status_code for n in range(LIMIT)]
    # Refused with the form again, until the failure that reaches the limit.
    assert statuses == [200] * (LIMIT - 1) + [429]

    response, client = _login(path, user, PASSWORD, address="203.0.113.50")

    assert response.status_code == 429
    assert not _signed_in(client)
    # Someone else, from another address, still signs in.
    other = "bo" if path == ADMIN_LOGIN else "ada"
    get_user_model().objects.create_user("bo", password=PASSWORD, is_staff=True)
    response, client = _login(path, other, PASSWORD, address="203.0.113.51")
    assert response.status_code == 302 and _signed_in(client)


def test_an_address_is_locked_out_after_failures_on_many_user_names(dana):
    for attempt in range(LIMIT):
        _login(LOGIN, f"guess-{attempt}", "wrong", address="192.0.2.9")

    response, client = _login(LOGIN, "dana", PASSWORD, address="192.0.2.9")

    assert response.status_code == 429 and not _signed_in(client)
    response, client = _login(LOGIN, "dana", PASSWORD, address="192.0.2.10")
    assert response.status_code == 302 and _signed_in(client)


def test_behind_a_proxy_the_forwarded_address_is_counted(dana, settings):
    settings.PORTAL_PROXY_COUNT = 1
    for attempt in range(LIMIT):
        Client(REMOTE_ADDR="10.0.0.1").post(
            LOGIN, {"username": f"guess-{attempt}", "password": "x"}, HTTP_X_FORWARDED_FOR="192.0.2.66"
        )
    # Everyone comes through the same proxy: only the attacker's address is locked out.
    client = Client(REMOTE_ADDR="10.0.0.1")
    response = client.post(LOGIN, {"username": "dana", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="192.0.2.67")
    assert response.status_code == 302 and _signed_in(client)
    locked = Client(REMOTE_ADDR="10.0.0.1").post(
        LOGIN, {"username": "dana", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="192.0.2.66"
    )
    assert locked.status_code == 429


def test_the_single_sign_on_callback_is_locked_out_by_address(settings, monkeypatch):
    """The callback authenticates with the request and no user name; failures count
    against the address, and a locked-out address never reaches the provider."""
    from requests_app.web.oidc import PortalOIDCBackend

    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "django.contrib.auth.backends.ModelBackend",
        "requests_app.web.oidc.PortalOIDCBackend",
    ]
    for name in ("OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT",
                 "OIDC_OP_AUTHORIZATION_ENDPOINT"):
        setattr(settings, name, f"https://sso.example.test/{name.lower()}")
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = "portal", "s3cret"
    reached = []
    original = PortalOIDCBackend.authenticate

    def authenticate_with_provider(self, request, **kwargs):
        reached.append(request.META["REMOTE_ADDR"])
        return original(self, request, **kwargs)  # no code in the callback: refused

    monkeypatch.setattr(PortalOIDCBackend, "authenticate", authenticate_with_provider)

    def callback(address: str):
        request = RequestFactory().get("/oidc/callback/", REMOTE_ADDR=address)
        return request, authenticate(request=request, nonce="n", code_verifier=None)

    for _ in range(LIMIT):
        assert callback("192.0.2.99")[1] is None
    assert len(reached) == LIMIT

    request, user = callback("192.0.2.99")
    assert user is None and request.axes_locked_out
    assert len(reached) == LIMIT  # the provider was not asked
    request, _ = callback("192.0.2.100")
    assert not getattr(request, "axes_locked_out", False) and len(reached) == LIMIT + 1


def _lock_out(username: str, address: str = "198.51.100.7") -> None:
    for _ in range(LIMIT):
        _login(LOGIN, username, "wrong", address=address)
    assert _login(LOGIN, username, PASSWORD, address=address)[0].status_code == 429


def test_an_administrator_lifts_a_lockout_and_it_is_audited(dana, admin_user):
    _lock_out("dana")

    cleared = login_lockout_reset(actor=admin_user, username="dana", ip_address="198.51.100.7", source_ip="10.1.1.1")

    assert cleared >= 1
    response, client = _login(LOGIN, "dana", PASSWORD)
    assert response.status_code == 302 and _signed_in(client)
    event = AuditEvent.objects.get(action="login.unlocked")
    assert (event.actor_label, event.source_ip) == ("ada", "10.1.1.1")
    assert event.details == {"username": "dana", "ip_address": "198.51.100.7", "attempts_cleared": cleared}


def test_nobody_else_lifts_a_lockout(dana):
    _lock_out("dana")
    with pytest.raises(NotAllowed):
        login_lockout_reset(actor=dana, username="dana")
    assert _login(LOGIN, "dana", PASSWORD)[0].status_code == 429
    assert not AuditEvent.objects.filter(action="login.unlocked").exists()


def test_the_command_lifts_a_lockout_with_an_audit_event(dana, capsys):
    _lock_out("dana")
    call_command("unlock_login", "--username", "dana")
    assert "Cleared" in capsys.readouterr().out
    assert _login(LOGIN, "dana", PASSWORD, address="198.51.100.8")[0].status_code == 302
    event = AuditEvent.objects.get(action="login.unlocked")
    assert event.actor_label.startswith("console") and event.details["username"] == "dana"


def test_the_admin_lists_attempts_and_unlocks_only_through_the_audited_action(dana, admin_user):
    from axes.models import AccessAttempt

    _lock_out("dana")
    staff = Client()
    staff.force_login(admin_user)
    changelist = "/admin/axes/accessattempt/"
    assert "dana" in staff.get(changelist).content.decode()
    attempt = AccessAttempt.objects.get(username="dana")
    assert staff.post(f"{changelist}{attempt.pk}/delete/").status_code == 403
    assert AccessAttempt.objects.filter(username="dana").exists()

    response = staff.post(changelist, {"action": "unlock_selected", "_selected_action": [attempt.pk]})

    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username="dana").exists()
    assert AuditEvent.objects.filter(action="login.unlocked", actor_label="ada").count() == 1
    assert _login(LOGIN, "dana", PASSWORD)[0].status_code == 302
