"""POST /slack/interactions: the Approve and Reject buttons of the portal's
Slack messages, and the dialog a rejection asks its comment in.

Not a session route: no cookie, no CSRF token, no API token. A request is
taken only with a valid Slack signature (``X-Slack-Signature``, the v0 HMAC of
the body with the app's signing secret, checked by the Slack SDK's
``SignatureVerifier``), a timestamp within five minutes, and a signature not
seen before (``SlackRequestSeen``): anything else is 401 and nothing is read.

The Slack user is mapped to a portal user (``people``); then the action is
checked and done exactly as on the pages and in the API: the same entry in
the table of actions (``requests_app.actions``), the same service, which
checks again under its row lock (no self-approval, approvers of the Remote
account only, quorum, the plan hash the button carried). Refusals go back to
that Slack user alone (an ephemeral message, or an error in the dialog);
the audit trail records the Slack user the decision came through.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.signature import SignatureVerifier

from requests_app import slack
from requests_app.actions import ACTIONS
from requests_app.errors import DomainError, PlanChanged, ValidationFailed
from requests_app.models import SlackMessage, SlackRequestSeen
from requests_app.slack import messages
from requests_app.slack.people import portal_user_for

logger = logging.getLogger(__name__)

# Slack's window for a signature; seen signatures are kept a little longer.
SIGNATURE_WINDOW = timedelta(minutes=5)
_SEEN_KEPT = SIGNATURE_WINDOW * 2 + timedelta(minutes=1)
REJECT_DIALOG = "reject_request"
COMMENT_BLOCK = "comment"
COMMENT_MAX = 1000


def _signed(request: HttpRequest) -> bool:
    """A body Slack signed with our signing secret, within its window, seen for the first time."""
    secret = settings.SLACK_SIGNING_SECRET
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not secret or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12 or not signature:
        return False
    if not SignatureVerifier(secret).is_valid(body=request.body, timestamp=timestamp, signature=signature):
        return False
    now = timezone.now()
    try:
        with transaction.atomic():
            SlackRequestSeen.objects.filter(received_at__lt=now - _SEEN_KEPT).delete()
            SlackRequestSeen.objects.create(signature=signature[:80], received_at=now)
    except IntegrityError:
        logger.warning("refused a replayed Slack request")
        return False
    return True


@csrf_exempt
@require_POST
def interactions(request: HttpRequest) -> HttpResponse:
    if not _signed(request):
        return HttpResponse("Not signed by Slack.", status=401, content_type="text/plain")
    try:
        payload = json.loads(request.POST["payload"])
        kind = payload["type"]
    except (KeyError, ValueError, TypeError):
        return HttpResponse("Not a Slack interaction.", status=400, content_type="text/plain")
    try:
        if kind == "block_actions":
            return _button(payload)
        if kind == "view_submission" and payload["view"]["callback_id"] == REJECT_DIALOG:
            return _reject_submitted(payload)
    except (KeyError, ValueError, TypeError, AttributeError):
        return HttpResponse("Not an interaction the portal knows.", status=400, content_type="text/plain")
    return HttpResponse(status=200)


def _tell(channel: str, slack_user_id: str, text: str) -> None:
    """A message only ``slack_user_id`` sees, in the channel of the button they pressed."""
    try:
        slack.web_client().chat_postEphemeral(channel=channel, user=slack_user_id, text=text)
    except slack.SLACK_ERRORS as exc:
        logger.warning("could not answer a Slack user: %s", exc)


def _acting_user(payload: dict) -> tuple[Any, str]:
    """The portal user behind the interaction (with the Slack origin the audit trail records), or why not."""
    slack_user = payload["user"]
    slack_user_id = str(slack_user["id"])
    team_id = str(slack_user.get("team_id") or (payload.get("team") or {}).get("id") or "")
    match = portal_user_for(slack_user_id, team_id=team_id)
    if match.user is None:
        return None, match.why_not
    match.user.slack_origin = {"user_id": slack_user_id, "team_id": team_id}
    return match.user, ""


def _button(payload: dict) -> HttpResponse:
    (action,) = payload["actions"][:1]
    action_id = action["action_id"]
    if action_id not in (messages.APPROVE, messages.REJECT):
        return HttpResponse(status=200)  # "Open in the portal" is a link: nothing to do
    value = json.loads(action["value"])
    request_id, plan_hash = int(value["request"]), str(value["plan_hash"])
    channel = str(payload["channel"]["id"])
    slack_user_id = str(payload["user"]["id"])
    # Buttons are taken only from the portal's own message about that request.
    message_ts = str((payload.get("container") or {}).get("message_ts") or "")
    if not SlackMessage.objects.filter(request_id=request_id, channel=channel, ts=message_ts).exists():
        _tell(channel, slack_user_id, "This is not the portal's message about that request; nothing was done.")
        return HttpResponse(status=200)
    user, why_not = _acting_user(payload)
    if user is None:
        _tell(channel, slack_user_id, why_not)
        return HttpResponse(status=200)
    if action_id == messages.APPROVE:
        _approve(user, request_id=request_id, plan_hash=plan_hash, channel=channel, slack_user_id=slack_user_id)
    else:
        _open_reject_dialog(user, payload, request_id=request_id, channel=channel, slack_user_id=slack_user_id)
    return HttpResponse(status=200)


def _approve(user, *, request_id: int, plan_hash: str, channel: str, slack_user_id: str) -> None:
    action = ACTIONS["approve"]
    try:
        action.check(user=user, request_id=request_id)
        action.service(request_id=request_id, user=user, plan_hash=plan_hash, comment="", source_ip=None)
    except PlanChanged:
        _tell(channel, slack_user_id, (
            f"The plan of request #{request_id} changed since this message showed it, so nothing was decided. "
            "The message now shows the current plan: review it and approve again."
        ))
        messages.refresh_request(request_id)
    except DomainError as error:
        _tell(channel, slack_user_id, f"Could not approve request #{request_id}: {error.message}")
    else:
        _tell(channel, slack_user_id, f"You approved the plan of request #{request_id} shown in this message.")


def _open_reject_dialog(user, payload: dict, *, request_id: int, channel: str, slack_user_id: str) -> None:
    try:
        request = ACTIONS["reject"].check(user=user, request_id=request_id)
    except DomainError as error:
        _tell(channel, slack_user_id, f"Could not reject request #{request_id}: {error.message}")
        return
    dialog = {
        "type": "modal",
        "callback_id": REJECT_DIALOG,
        "private_metadata": json.dumps({"request": request.pk, "channel": channel}),
        "title": {"type": "plain_text", "text": f"Reject request #{request.pk}"[:24]},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{
            "type": "input",
            "block_id": COMMENT_BLOCK,
            "label": {"type": "plain_text", "text": "Why (the requester reads this)"},
            "element": {"type": "plain_text_input", "action_id": COMMENT_BLOCK, "multiline": True,
                        "max_length": COMMENT_MAX},
        }],
    }
    try:
        slack.web_client().views_open(trigger_id=str(payload["trigger_id"]), view=dialog)
    except slack.SLACK_ERRORS as exc:
        logger.warning("could not open the reject dialog in Slack: %s", exc)
        _tell(channel, slack_user_id, "Slack did not open the dialog; reject the request in the portal instead.")


def _reject_submitted(payload: dict) -> HttpResponse:
    view = payload["view"]
    meta = json.loads(view["private_metadata"])
    request_id = int(meta["request"])
    comment = (view["state"]["values"][COMMENT_BLOCK][COMMENT_BLOCK].get("value") or "").strip()
    user, why_not = _acting_user(payload)
    if user is None:
        return _dialog_error(why_not)
    action = ACTIONS["reject"]
    try:
        action.check(user=user, request_id=request_id)
        action.service(request_id=request_id, user=user, comment=comment, source_ip=None)
    except ValidationFailed as error:
        return _dialog_error(" ".join(error.errors.get("comment") or [error.message]))
    except DomainError as error:
        return _dialog_error(error.message)
    return HttpResponse(status=200)  # closes the dialog; the message shows the rejection


def _dialog_error(text: str) -> JsonResponse:
    return JsonResponse({"response_action": "errors", "errors": {COMMENT_BLOCK: text[:300]}})
