"""A fake Slack: a small Web API on loopback that records every call, and the
signing of interaction payloads as Slack signs them.

The fake answers the methods the portal uses (chat.postMessage, chat.update,
chat.postEphemeral, users.info, views.open) the way Slack does: ``{"ok":
true, ...}``, or ``{"ok": false, "error": ...}`` for a bad token or an
unknown user. Each call is kept with its method, its bearer token and its
arguments (query string, form or JSON body, as the SDK sends them).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

BOT_TOKEN = "xoxb-test-portal-bot-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM_ID = "T0PORTAL01"
CHANNEL = "C0REMOTE0001"


@dataclass
class Call:
    method: str
    token: str
    args: dict


@dataclass
class FakeSlack:
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    # Slack user id -> the user object users.info answers with.
    users: dict[str, dict] = field(default_factory=dict)
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))

    def add_user(self, slack_user_id: str, email: str, *, confirmed: bool = True, team_id: str = TEAM_ID, **extra):
        self.users[slack_user_id] = {
            "id": slack_user_id, "team_id": team_id, "deleted": False, "is_bot": False,
            "is_email_confirmed": confirmed, "profile": {"email": email}, **extra,
        }

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def answer(self, method: str, token: str, args: dict) -> dict:
        if token != BOT_TOKEN:
            return {"ok": False, "error": "invalid_auth"}
        if method == "chat.postMessage":
            return {"ok": True, "channel": args["channel"], "ts": f"1700000000.{next(self._ts):06d}",
                    "message": {"text": args.get("text"), "blocks": args.get("blocks")}}
        if method == "chat.update":
            return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}
        if method == "users.info":
            user = self.users.get(args.get("user", ""))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        if method == "views.open":
            return {"ok": True, "view": {"id": "V0DIALOG01", **args["view"]}}
        return {"ok": False, "error": "unknown_method"}


@pytest.fixture
def fake_slack(settings):
    """The fake Slack Web API on loopback, and the portal's Slack app pointed at it."""
    fake = FakeSlack()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self):
            parsed = urllib.parse.urlsplit(self.path)
            method = parsed.path.rsplit("/", 1)[-1]
            args = {key: values[-1] for key, values in urllib.parse.parse_qs(parsed.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if body and self.headers.get("Content-Type", "").startswith("application/json"):
                args.update(json.loads(body))
            elif body:
                args.update({key: values[-1] for key, values in urllib.parse.parse_qs(body.decode()).items()})
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            fake.calls.append(Call(method, token, args))
            answer = json.dumps(fake.answer(method, token, args)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = _handle

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = "http://127.0.0.1:%d/api/" % server.server_address[1]
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.SLACK_API_URL = fake.url
    settings.SLACK_TEAM_ID = TEAM_ID
    yield fake
    server.shutdown()
    server.server_close()


def signed(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict:
    """The headers Slack sends with ``body``: its v0 signature and timestamp."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"HTTP_X_SLACK_REQUEST_TIMESTAMP": str(timestamp), "HTTP_X_SLACK_SIGNATURE": f"v0={digest}"}


def form(payload: dict) -> str:
    """An interaction as Slack posts it: form-encoded, the JSON in ``payload``."""
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


_action_times = itertools.count(1)


def button_press(action_id: str, value: str, *, slack_user: str, channel: str, message_ts: str,
                 team_id: str = TEAM_ID) -> dict:
    """A block_actions payload: ``slack_user`` pressed a button of the message ``message_ts``."""
    return {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "portal-test"},
        "user": {"id": slack_user, "username": slack_user.lower(), "team_id": team_id},
        "api_app_id": "A0PORTAL01",
        "trigger_id": "1337.42.trigger",
        "channel": {"id": channel, "name": "remote-approvals"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "message": {"ts": message_ts},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value,
                     "action_ts": f"1700000002.{next(_action_times):06d}"}],
    }


def dialog_submission(private_metadata: str, comment: str, *, slack_user: str, team_id: str = TEAM_ID) -> dict:
    """A view_submission payload of the reject dialog."""
    return {
        "type": "view_submission",
        "team": {"id": team_id},
        "user": {"id": slack_user, "team_id": team_id},
        "view": {
            "id": "V0DIALOG01", "callback_id": "reject_request", "private_metadata": private_metadata,
            "state": {"values": {"comment": {"comment": {"type": "plain_text_input", "value": comment}}}},
        },
    }
