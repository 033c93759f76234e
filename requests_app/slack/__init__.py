"""The portal's Slack app: approvals asked and answered where the approvers are.

- ``messages``: the message that asks a Remote account's approvers about a
  request, posted when the request is filed and updated in place as it moves
  (called after commit, like the notifications);
- ``people``: which portal user a Slack user is (an administrator's link, or
  Slack's confirmed e-mail address);
- ``interactions``: the endpoint Slack sends button presses and the reject
  dialog to; it accepts only requests signed with the app's signing secret
  and calls the same services, with the same rules, as the pages and the API.

Slack's Web API is reached through the Slack SDK (``slack_sdk.WebClient``);
``SLACK_API_URL`` points it elsewhere (the tests' fake Slack).
"""
from __future__ import annotations

import http.client

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

# What a call to Slack may raise: Slack's answer was an error, or Slack could
# not be reached (the SDK lets urllib's errors through), or it answered garbage.
SLACK_ERRORS = (SlackClientError, OSError, http.client.HTTPException, ValueError)


def enabled() -> bool:
    """The Slack app is configured (its bot token and signing secret are set)."""
    return bool(settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET)


def web_client() -> WebClient:
    base_url = settings.SLACK_API_URL if settings.SLACK_API_URL.endswith("/") else settings.SLACK_API_URL + "/"
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=base_url, timeout=settings.SLACK_TIMEOUT)
