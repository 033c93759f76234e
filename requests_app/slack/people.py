"""Which portal user a Slack user is.

First an administrator's explicit link (``SlackIdentity``); otherwise the
e-mail address Slack holds for the user (``users.info``, which needs the
``users:read.email`` scope), only when Slack says the address is confirmed
(``is_email_confirmed``), the account is a person's (not a bot, not
deactivated) and, with ``SLACK_TEAM_ID``, of that workspace; and only when
exactly one active portal user has that address. Anything else is nobody:
the caller refuses, and nothing changes.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model

from requests_app import slack
from requests_app.models import SlackIdentity


@dataclass(frozen=True)
class Match:
    user: object | None
    why_not: str = ""  # for the Slack user, when ``user`` is None


NOBODY = (
    "Your Slack account is not linked to a portal user, so nothing was done. Ask a portal administrator to link it, "
    "or make sure your Slack e-mail address is confirmed and the same as in the portal."
)


def portal_user_for(slack_user_id: str, *, team_id: str = "") -> Match:
    """The active portal user ``slack_user_id`` acts as, or why there is none."""
    if settings.SLACK_TEAM_ID and team_id != settings.SLACK_TEAM_ID:
        return Match(None, "This Slack workspace may not act in the portal.")
    link = SlackIdentity.objects.select_related("user").filter(slack_user_id=slack_user_id).first()
    if link is not None:
        if not link.user.is_active:
            return Match(None, "The portal user linked to your Slack account is deactivated.")
        return Match(link.user)
    try:
        info = slack.web_client().users_info(user=slack_user_id)
    except slack.SLACK_ERRORS:
        return Match(None, "Slack could not tell the portal who you are; nothing was done. Try again shortly.")
    profile_user = info.get("user") or {}
    email = (profile_user.get("profile") or {}).get("email") or ""
    if (
        not email
        or profile_user.get("is_email_confirmed") is not True
        or profile_user.get("deleted")
        or profile_user.get("is_bot")
        or (settings.SLACK_TEAM_ID and profile_user.get("team_id") != settings.SLACK_TEAM_ID)
    ):
        return Match(None, NOBODY)
    users = list(get_user_model().objects.filter(email__iexact=email, is_active=True)[:2])
    if len(users) != 1:
        return Match(None, NOBODY)
    return Match(users[0])
