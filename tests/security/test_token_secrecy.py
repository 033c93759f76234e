"""An API token is shown once, when it is made, and then nowhere: not in a log
line, an audit event, a page, an API answer, an export, nor the database
(which holds a hash and the short lookup prefix).

Tokens are made every way there is (the page, the API, the command), used
for reads and for a decision, and one is revoked; then everything the portal
can show or has written is searched for them.
"""
from __future__ import annotations

import json
import logging
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from requests_app.models import ApiToken, AuditEvent
from tests.requests_app.page_rows import make_request

pytestmark = pytest.mark.django_db


def _secret_parts(token: str) -> list[str]:
    # The whole token, and what follows the 15 characters knox keeps in clear to look it up.
    return [token, token[15:]]


def _body(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode()


def test_a_token_is_shown_once_and_then_never_again(people, site, caplog):
    caplog.set_level(logging.DEBUG)
    requester, approver, staff = people["requester"], people["approver"], people["staff"]
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    pending = make_request(requester, site)
    made = {}

    page = Client()
    page.force_login(approver)
    shown = page.post("/tokens/", {"name": "page-made", "expires_days": "5"}).content.decode()
    made["page"] = re.search(r'value="(dmsap_[0-9a-f]+)"', shown).group(1)

    api = Client()
    api.force_login(requester)
    made["api"] = api.post("/api/v1/tokens/", {"name": "api-made"}, content_type="application/json").json()["token"]

    out = StringIO()
    call_command("create_api_token", "staff", "--name", "cli-made", stdout=out)
    made["cli"] = out.getvalue().splitlines()[-1]

    # Use them: reads, a decision, a revocation, and a wrong one.
    def with_token(token):
        return {"HTTP_AUTHORIZATION": f"Token {token}"}

    anybody = Client()
    assert anybody.get("/api/v1/tokens/", **with_token(made["api"])).status_code == 200
    approved = anybody.post(
        f"/api/v1/requests/{pending.pk}/approve/",
        {"comment": "fine", "plan_hash": pending.plan_hash},
        content_type="application/json",
        **with_token(made["page"]),
    )
    assert approved.status_code == 200, approved.content
    api_made_id = ApiToken.objects.get(name="api-made").pk
    assert anybody.delete(f"/api/v1/tokens/{api_made_id}/", **with_token(made["api"])).status_code == 200
    assert anybody.get("/api/v1/tokens/", **with_token(made["api"])).status_code == 401
    wrong = made["cli"][:-1] + ("1" if made["cli"].endswith("0") else "0")
    assert anybody.get("/api/v1/requests/", **with_token(wrong)).status_code == 401

    # Everything the portal shows afterwards.
    admin = Client()
    admin.force_login(staff)
    cli_made = ApiToken.objects.get(name="cli-made")
    answers = {
        "tokens page (approver)": page.get("/tokens/"),
        "tokens page (requester)": api.get("/tokens/"),
        "tokens API": anybody.get("/api/v1/tokens/", **with_token(made["cli"])),
        "audit API": admin.get("/api/v1/audit-events/"),
        "audit page": admin.get("/audit/"),
        "audit CSV": admin.get("/audit/export.csv"),
        "audit JSONL": admin.get("/audit/export.jsonl"),
        "request page": page.get(f"/requests/{pending.pk}/"),
        "request API": anybody.get(f"/api/v1/requests/{pending.pk}/", **with_token(made["page"])),
        "admin token list": admin.get(reverse("admin:requests_app_apitoken_changelist")),
        "admin token": admin.get(reverse("admin:requests_app_apitoken_change", args=[cli_made.pk])),
        "admin audit events": admin.get(reverse("admin:requests_app_auditevent_changelist")),
    }
    assert all(response.status_code == 200 for response in answers.values()), {
        what: response.status_code for what, response in answers.items() if response.status_code != 200
    }
    texts = {what: _body(response) for what, response in answers.items()}
    texts["log lines"] = "\n".join(record.getMessage() + json.dumps(record.__dict__, default=str) for record in caplog.records)
    texts["audit events"] = json.dumps(list(AuditEvent.objects.values()), default=str)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM requests_app_apitoken")
        texts["token table"] = json.dumps(cursor.fetchall(), default=str)

    # The test can see a token where it is: the decision names the token that made it.
    assert "page-made" in texts["audit API"] and "page-made" in texts["tokens page (approver)"]
    leaks = {
        (where, how): True
        for where, text in texts.items()
        for how, token in made.items()
        for part in _secret_parts(token)
        if part in text
    }
    assert leaks == {}
