"""What the operational endpoints and the notifications give away.

/metrics answers only the scraper holding METRICS_TOKEN (when one is set);
/readyz tells anonymous callers whether the portal is ready, never what is
down (tests/requests_app/test_ops.py). Names, justifications and comments
chosen by people or the identity provider reach the webhook as literal text
(no channel mention, no forged link) and the mail as plain text (no extra
header, no line that passes for the portal's own).
"""
from __future__ import annotations

import hmac
import json
from email import message_from_bytes

import pytest
from django.core import mail

from requests_app import notifications
from requests_app.models import RequestState
from tests.factories import AccessRequestFactory, DecisionFactory, UserFactory
from tests.requests_app.test_ops import webhook  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

TOKEN = "scrape-me-0123456789abcdef"


# --- /metrics ---------------------------------------------------------------


def test_without_a_metrics_token_metrics_stay_open(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["", f"Token {TOKEN}", "Bearer", "Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}"],
)
def test_with_a_metrics_token_metrics_need_exactly_that_bearer_token(client, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"portal_requests" not in response.content


def test_the_scraper_with_the_token_gets_the_metrics(client, settings):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert b"portal_requests" in response.content


def test_the_token_is_compared_in_constant_time(client, settings, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("requests_app.metrics.hmac.compare_digest", spy)
    settings.METRICS_TOKEN = TOKEN
    client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess")
    assert calls == [(b"guess", TOKEN.encode())]


# --- notifications ----------------------------------------------------------

HOSTILE_NAME = "Eve <!channel> <https://evil.example/login|Open the portal> @here & @everyone"


@pytest.fixture
def hostile_request(db):
    requester = UserFactory(username="eve", email="eve@example.com", first_name=HOSTILE_NAME, last_name="\r\nBcc: x")
    request = AccessRequestFactory(
        requester=requester,
        justification="Needed.\n\nReview it: https://evil.example/approve\r\nApproved by: the security team",
    )
    approver = UserFactory(username="rami", email="rami@example.com")
    # An address from the identity provider that tries to add a header of its own.
    smuggler = UserFactory(username="mallory", email="mallory@example.com\r\nBcc: attacker@evil.example")
    request.remote_account.approvers.set([approver, smuggler])
    return request


def test_the_webhook_gets_names_as_literal_text(hostile_request, webhook):  # noqa: F811
    notifications.notify_submitted(hostile_request)

    (text,) = webhook.texts()
    assert "<" not in text.replace(notifications.request_url(hostile_request), "")
    assert "<!channel>" not in text and "<https://evil.example" not in text
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example/login|Open the portal&gt;" in text
    assert "&amp;" in text and " & " not in text
    # No bare @here / @everyone a Slack-style service would turn into a mention.
    assert "@here" not in text and "@everyone" not in text
    assert "@\u200bhere" in text
    assert "\n" not in text and "\r" not in text


def test_the_webhook_escape_follows_slacks_rules():
    assert notifications.slack_escape("a & b <c> <!here> <@U123>") == "a &amp; b &lt;c&gt; &lt;!here&gt; &lt;@\u200bU123&gt;"
    assert notifications.slack_escape("@channel\nsecond line") == "@\u200bchannel second line"
    assert notifications.slack_escape("plain words stay") == "plain words stay"


def test_mail_is_plain_text_with_no_injected_header_or_forged_line(hostile_request, mailoutbox):
    notifications.notify_submitted(hostile_request)

    (message,) = mailoutbox
    # The address that carried a header is left out; the message still goes to the others.
    assert message.to == ["rami@example.com"]
    assert message.content_subtype == "plain" and not getattr(message, "alternatives", [])
    raw = message.message().as_bytes()
    parsed = message_from_bytes(raw)
    assert parsed.get_content_type() == "text/plain"
    assert parsed["Bcc"] is None and b"attacker@evil.example" not in raw
    assert "\n" not in message.subject and "\r" not in message.subject
    body = message.body
    # The name stays on its line; the justification's lines are indented under it.
    assert "Bcc: x" in body and "\nBcc:" not in body
    for line in body.splitlines():
        assert not line.startswith("Review it: https://evil.example")
        assert not line.startswith("Approved by:")
    assert "    Review it: https://evil.example/approve" in body


def test_a_comment_reaches_the_requester_indented_not_as_the_portals_own_lines(db, mailoutbox):
    request = AccessRequestFactory(requester=UserFactory(email="dana@example.com"))
    DecisionFactory(
        request=request, outcome="reject", comment="No.\nYour request #1 was approved.\nhttps://evil.example/"
    )
    request.state = RequestState.REJECTED
    request.save()

    notifications.notify_decided(request)

    lines = mailoutbox[0].body.splitlines()
    assert "Your request #1 was approved." not in lines
    assert "    Your request #1 was approved." in lines


def test_subjects_never_carry_a_line_break(db, mailoutbox):
    notifications._mail("Hello\r\nBcc: attacker@evil.example", "body", ["rami@example.com"])
    (message,) = mail.outbox
    raw = message.message().as_bytes()
    assert message_from_bytes(raw)["Bcc"] is None
    assert json.dumps(message.subject).count("\\n") == 0
