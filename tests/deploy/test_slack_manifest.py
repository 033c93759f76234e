"""The Slack app manifest asks for exactly the scopes the portal uses and sends
interactions to the portal's signed endpoint."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml
from django.urls import reverse

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "slack" / "manifest.yaml"


def test_the_manifest_asks_for_the_bot_scopes_the_portal_uses_and_no_more():
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["oauth_config"]["scopes"]["bot"] == ["chat:write", "users:read", "users:read.email"]
    assert "user" not in manifest["oauth_config"]["scopes"]


def test_interactivity_goes_to_the_portals_interactions_endpoint_over_https():
    interactivity = yaml.safe_load(MANIFEST.read_text())["settings"]["interactivity"]
    url = urlsplit(interactivity["request_url"])
    assert interactivity["is_enabled"] is True
    assert url.scheme == "https" and url.path == reverse("slack_interactions")
