"""API tokens: `manage.py drf_create_token` gives one, and it is how automation signs in."""
from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from rest_framework.test import APIClient


def test_a_token_from_the_command_authenticates_api_calls(accounts, people):
    out = StringIO()
    call_command("drf_create_token", "riley", stdout=out)
    key = out.getvalue().split()[2]

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/accounts/").status_code == 200

    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/v1/accounts/").status_code == 401


def test_a_browser_session_works_too(accounts, people):
    client = APIClient()
    client.force_login(people["riley"])

    assert client.get("/api/v1/requests/").status_code == 200
