"""API tokens: hashed, named, expiring, personal.

`manage.py create_api_token` makes one for automation; a person makes and
revokes their own over the API (and on the page: tests/requests_app/test_token_page.py).
An expired or revoked token is refused with 401; a decision made with a token
names the token in its audit event.
"""
from __future__ import annotations

from datetime import timedelta
from io import StringIO
from unittest.mock import ANY

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from requests_app.audit import verify_chain
from requests_app.models import ApiToken, AuditEvent
from tests.factories import api_token_for

TOKENS = "/api/v1/tokens/"


def _with_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def _signed_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _command(*args: str) -> tuple[str, str]:
    out = StringIO()
    call_command("create_api_token", *args, stdout=out)
    lines = out.getvalue().splitlines()
    return lines[-1], "\n".join(lines[:-1])


# --- the command ------------------------------------------------------------------------------------------


def test_the_command_prints_a_token_alone_on_its_last_line_and_it_signs_in(accounts, people):
    token, before = _command("riley", "--name", "nightly-sync", "--expires-days", "7")

    assert token.startswith("dmsap_") and " " not in token
    assert "nightly-sync" in before and token not in before
    assert _with_token(token).get("/api/v1/accounts/").status_code == 200
    row = ApiToken.objects.get(user=people["riley"])
    assert row.name == "nightly-sync"
    assert timedelta(days=7) - timedelta(minutes=1) < row.expiry - timezone.now() <= timedelta(days=7)
    event = AuditEvent.objects.get(action="token.created")
    assert event.actor_id is None and event.actor_label.startswith("console")
    assert event.details["owner"] == "riley" and event.details["token_id"] == row.pk


def test_the_database_holds_only_a_hash_of_the_token(people):
    token, _ = _command("riley", "--name", "ci")

    row = ApiToken.objects.values().get(user=people["riley"])
    stored = " ".join(str(value) for value in row.values())
    # knox keeps the first 15 characters to look the row up: the prefix and 9 more; the rest only as a hash.
    assert row["token_key"] == token[:15] and token[15:] not in stored
    assert len(row["digest"]) == 128 and token not in stored


def test_the_command_defaults_the_name_and_refuses_what_it_must(people):
    token, _ = _command("riley")
    assert ApiToken.objects.get(user=people["riley"]).name.startswith("cli-")
    assert token

    with pytest.raises(CommandError, match="No user"):
        _command("nobody-here")
    with pytest.raises(CommandError, match="expires_days"):
        _command("riley", "--name", "too-long", "--expires-days", "366")
    with pytest.raises(CommandError, match="expires_days"):
        _command("riley", "--name", "never", "--expires-days", "0")
    people["olive"].is_active = False
    people["olive"].save()
    with pytest.raises(CommandError, match="deactivated"):
        _command("olive", "--name", "ghost")


def test_drf_create_token_is_gone_and_so_is_authtoken(people):
    from django.apps import apps

    with pytest.raises(CommandError, match="Unknown command"):
        call_command("drf_create_token", "riley")
    assert not apps.is_installed("rest_framework.authtoken")


# --- 401: wrong, expired, revoked ------------------------------------------------------------------------


def test_a_token_that_does_not_exist_is_refused(people):
    assert _with_token("not-a-real-token").get(TOKENS).status_code == 401
    assert _with_token("dmsap_" + "0" * 64).get(TOKENS).status_code == 401


def test_a_header_that_is_not_utf8_is_refused_not_a_server_error(people):
    client = APIClient()
    response = client.get(TOKENS, HTTP_AUTHORIZATION="Token dmsap_\xe9\xff")
    assert response.status_code == 401


def test_an_expired_token_is_refused_with_401(people):
    token = api_token_for(people["riley"], name="short-lived")
    client = _with_token(token)
    assert client.get(TOKENS).status_code == 200

    ApiToken.objects.filter(user=people["riley"]).update(expiry=timezone.now() - timedelta(seconds=1))

    response = client.get(TOKENS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_a_revoked_token_is_refused_with_401(people):
    token = api_token_for(people["riley"], name="to-revoke")
    client = _with_token(token)
    token_id = ApiToken.objects.get(user=people["riley"]).pk

    # A token may revoke itself (the end of a rotation).
    revoked = client.delete(f"{TOKENS}{token_id}/")
    assert revoked.json() == {"id": token_id, "name": "to-revoke", "created_at": ANY, "expires_at": ANY}

    assert client.get(TOKENS).status_code == 401
    assert not ApiToken.objects.filter(pk=token_id).exists()
    event = AuditEvent.objects.get(action="token.revoked")
    assert event.details == {
        "token_id": token_id,
        "name": "to-revoke",
        "owner": "riley",
        "via_token": {"id": token_id, "name": "to-revoke"},
    }


def test_the_token_of_a_deactivated_user_is_refused(people):
    client = _with_token(api_token_for(people["riley"]))
    people["riley"].is_active = False
    people["riley"].save()
    assert client.get(TOKENS).status_code == 401


# --- a person's own tokens over the API ------------------------------------------------------------------


def test_a_person_makes_lists_and_revokes_their_own_tokens(people):
    riley = _signed_in(people["riley"])

    made = riley.post(TOKENS, {"name": "laptop script", "expires_days": 10}, format="json")

    assert made.status_code == 201, made.json()
    body = made.json()
    assert set(body) == {"id", "name", "created_at", "expires_at", "token"}
    assert "no-store" in made["Cache-Control"]
    assert _with_token(body["token"]).get(TOKENS).status_code == 200
    listed = riley.get(TOKENS).json()
    assert listed == [{key: body[key] for key in ("id", "name", "created_at", "expires_at")}]
    event = AuditEvent.objects.get(action="token.created")
    assert event.actor_label == "riley" and event.details["name"] == "laptop script"

    assert riley.delete(f"{TOKENS}{body['id']}/").status_code == 200
    assert riley.get(TOKENS).json() == []
    assert _with_token(body["token"]).get(TOKENS).status_code == 401


def test_the_default_expiry_is_the_configured_one(people, settings):
    settings.API_TOKEN_DEFAULT_EXPIRY_DAYS = 3
    body = _signed_in(people["riley"]).post(TOKENS, {"name": "default"}, format="json").json()
    expiry = ApiToken.objects.get(pk=body["id"]).expiry
    assert timedelta(days=3) - timedelta(minutes=1) < expiry - timezone.now() <= timedelta(days=3)


def test_a_token_cannot_make_tokens(people):
    client = _with_token(api_token_for(people["riley"]))

    response = client.post(TOKENS, {"name": "offspring"}, format="json")

    assert response.status_code == 403
    assert not ApiToken.objects.filter(name="offspring").exists()
    # Refused before the body is read: an invalid one is a 403 too.
    assert client.post(TOKENS, {"name": " ", "expires_days": "x"}, format="json").status_code == 403


def test_nobody_makes_a_token_for_someone_else(people):
    sam = _signed_in(people["sam"])

    response = sam.post(TOKENS, {"name": "for riley", "user": "riley", "user_id": people["riley"].pk}, format="json")

    assert response.status_code == 201
    assert ApiToken.objects.get(name="for riley").user == people["sam"]
    assert not ApiToken.objects.filter(user=people["riley"]).exists()


def test_only_the_owner_and_administrators_revoke_a_token(people):
    token = api_token_for(people["riley"], name="riley's")
    token_id = ApiToken.objects.get(user=people["riley"]).pk

    assert _signed_in(people["avery"]).delete(f"{TOKENS}{token_id}/").status_code == 404
    assert _with_token(api_token_for(people["avery"])).delete(f"{TOKENS}{token_id}/").status_code == 404
    assert _with_token(token).get(TOKENS).status_code == 200
    # Others' tokens are not listed, not even to staff.
    assert _signed_in(people["sam"]).get(TOKENS).json() == []

    assert _signed_in(people["sam"]).delete(f"{TOKENS}{token_id}/").status_code == 200
    assert _with_token(token).get(TOKENS).status_code == 401


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": " leading space"}, "name"),
        ({"name": "new\nline"}, "name"),
        ({"name": "trailing newline\n"}, "name"),
        ({"name": "nul\x00"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "ok", "expires_days": 0}, "expires_days"),
        ({"name": "ok", "expires_days": 366}, "expires_days"),
        ({"name": "ok", "expires_days": "5"}, "expires_days"),
        ({"name": "ok", "expires_days": 5.0}, "expires_days"),
        ({"name": "ok", "expires_days": True}, "expires_days"),
    ],
)
def test_bad_bodies_are_refused_with_the_field_named(people, body, field):
    response = _signed_in(people["riley"]).post(TOKENS, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not ApiToken.objects.exists()


def test_names_are_unique_per_person_and_the_number_of_tokens_is_bounded(people):
    riley = _signed_in(people["riley"])
    assert riley.post(TOKENS, {"name": "same"}, format="json").status_code == 201
    assert riley.post(TOKENS, {"name": "same"}, format="json").status_code == 400
    assert _signed_in(people["avery"]).post(TOKENS, {"name": "same"}, format="json").status_code == 201

    from requests_app.services.api_tokens import MAX_TOKENS_PER_USER

    for number in range(MAX_TOKENS_PER_USER - 1):
        assert riley.post(TOKENS, {"name": f"t{number}"}, format="json").status_code == 201
    response = riley.post(TOKENS, {"name": "one too many"}, format="json")
    assert response.status_code == 400 and "revoke one" in response.json()["errors"]["name"][0]
    # Expired tokens do not count: they are cleared away.
    ApiToken.objects.filter(user=people["riley"], name="same").update(expiry=timezone.now() - timedelta(seconds=1))
    assert riley.post(TOKENS, {"name": "one too many"}, format="json").status_code == 201


def test_malformed_token_ids_are_the_apis_404(people):
    riley = _signed_in(people["riley"])
    for token_id in ("abc", "0", "-1", "99999999999999999999", "١"):
        response = riley.delete(f"{TOKENS}{token_id}/")
        assert response.status_code == 404 and response.json()["code"] == "not_found"


# --- the audit trail names the token ----------------------------------------------------------------------


def test_a_decision_made_with_a_token_names_the_token_in_its_audit_event(filed, people, client_for):
    token = api_token_for(people["avery"], name="approval-bot")
    token_id = ApiToken.objects.get(name="approval-bot").pk

    response = _with_token(token).post(
        f"/api/v1/requests/{filed['id']}/approve/", {"comment": "ok", "plan_hash": filed["plan_hash"]}, format="json"
    )

    assert response.status_code == 200, response.json()
    decision = AuditEvent.objects.get(request_id=filed["id"], actor_label="avery", action__startswith="decision")
    assert decision.details["via_token"] == {"id": token_id, "name": "approval-bot"}
    assert token not in str(decision.details)
    # The field is part of what is hashed, and the chain still verifies.
    assert verify_chain().ok


def test_a_request_filed_with_a_token_names_the_token_and_a_session_names_none(portal, people, submit_body):
    token = api_token_for(people["riley"], name="filing-bot")

    with_token = _with_token(token).post("/api/v1/requests/", submit_body, format="json").json()
    with_session = _signed_in(people["riley"]).post(
        "/api/v1/requests/", {**submit_body, "endpoint_identifier": "by-hand"}, format="json"
    ).json()

    by_token = AuditEvent.objects.filter(request_id=with_token["id"], actor_label="riley")
    by_hand = AuditEvent.objects.filter(request_id=with_session["id"], actor_label="riley")
    assert by_token.exists() and by_hand.exists()
    assert all(event.details["via_token"]["name"] == "filing-bot" for event in by_token)
    assert not any("via_token" in event.details for event in by_hand)
    # What others read back from the audit API says which token it was, and nothing of the token.
    read_back = _signed_in(people["sam"]).get(f"/api/v1/audit-events/?request={with_token['id']}").json()
    assert read_back["results"][0]["details"]["via_token"]["name"] == "filing-bot"
    assert verify_chain().ok


def test_a_browser_session_works_too(accounts, people):
    assert _signed_in(people["riley"]).get("/api/v1/requests/").status_code == 200
