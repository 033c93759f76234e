"""Single sign-on is off by default and, once configured, starts at the provider."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import NoReverseMatch, reverse

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import django
django.setup()
from django.conf import settings
settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
from django.test import Client
client = Client()
login = client.get("/auth/login/").content.decode()
print("SSO-BUTTON" if "Sign in with single sign-on" in login else "NO-BUTTON")
print(client.get("/oidc/authenticate/")["Location"])
"""


def test_sso_is_off_without_configuration(client):
    with pytest.raises(NoReverseMatch):
        reverse("oidc_authentication_init")
    assert "single sign-on" not in client.get(reverse("login")).content.decode()


def test_configured_sso_offers_the_button_and_redirects_to_the_provider():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "OIDC_RP_CLIENT_ID": "portal-client",
        "OIDC_RP_CLIENT_SECRET": "s3cret",
        "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://sso.example.test/authorize",
        "OIDC_OP_TOKEN_ENDPOINT": "https://sso.example.test/token",
        "OIDC_OP_USER_ENDPOINT": "https://sso.example.test/userinfo",
        "OIDC_OP_JWKS_ENDPOINT": "https://sso.example.test/jwks",
        "OIDC_OP_ISSUER": "https://sso.example.test",
    }
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    button, location = result.stdout.split()
    assert button == "SSO-BUTTON"
    assert location.startswith("https://sso.example.test/authorize?")
    assert "client_id=portal-client" in location and "scope=openid+email+profile" in location
    assert "code_challenge_method=S256" in location  # PKCE


def test_half_configured_sso_refuses_to_start():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "OIDC_RP_CLIENT_ID": "portal-client"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "OIDC_OP_AUTHORIZATION_ENDPOINT" in result.stderr and "OIDC_OP_ISSUER" in result.stderr
