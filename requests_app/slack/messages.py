"""The Slack message that asks a Remote account's approvers about a request.

Posted to the Remote account's channel (``AwsAccount.slack_channel``) when a
request is filed, and updated in place (``chat.update`` on the stored channel
and ``ts``) whenever the request moves or an approval comes in, wherever it
was made: the pages, the API or Slack. Like the notifications, these run
after the change committed and never fail the caller: Slack being down is
logged, and the portal shows the request either way.

The message shows what the approvers decide on: the request, the statement it
adds to the secret's policy and to the key's policy, the preflight outcome and
the plan hash. Its Approve button carries that hash, so an approval from Slack
is bound to the plan the message showed. Everything people or AWS chose
(names, justification, comments, documents) is escaped for Slack's markup.
"""
from __future__ import annotations

import json
import logging

from django.db import transaction
from django.utils import timezone

from provisioning.diagnoses import get_diagnosis
from requests_app import notifications, slack
from requests_app.models import AccessRequest, Decision, RequestState, SlackMessage

logger = logging.getLogger(__name__)

APPROVE = "approve"
REJECT = "reject"
# Slack refuses a section text over 3,000 characters.
_TEXT_MAX = 2900


def _escape(text) -> str:
    return notifications.slack_escape(text)


def _document(document) -> str:
    """A policy statement as a code block: our own line breaks, Slack's markup escaped."""
    lines = json.dumps(document, indent=2, sort_keys=True).splitlines()
    text = "\n".join(_escape(line) for line in lines)
    return f"```{text[:_TEXT_MAX - 10]}```"


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:_TEXT_MAX]}}


def _person(user) -> str:
    return _escape(user.get_full_name() or user.get_username())


def button_value(request: AccessRequest) -> str:
    """What the buttons carry: the request and the plan hash the message shows."""
    return json.dumps({"request": request.pk, "plan_hash": request.plan_hash}, separators=(",", ":"))


def _current_approvals(request: AccessRequest) -> list[Decision]:
    return [
        decision
        for decision in request.decisions.select_related("approver").order_by("created_at", "id")
        if decision.outcome == Decision.Outcome.APPROVE
        and decision.plan_hash == request.plan_hash
        and decision.approval_round == request.approval_round
    ]


def _status(request: AccessRequest) -> str:
    """Where the request stands, in one or two lines."""
    state = request.state
    approvals = _current_approvals(request)
    approved_by = ", ".join(_person(decision.approver) for decision in approvals)
    required = request.remote_account.required_approvals
    if state in (RequestState.PENDING_APPROVAL, RequestState.NEEDS_REAPPROVAL):
        waiting = "Awaits approval" if state == RequestState.PENDING_APPROVAL else (
            "Needs re-approval: AWS now gives another plan than the one approved (nothing was written)"
        )
        line = f"*{waiting}* ({len(approvals)} of {required} approvals"
        return line + (f": {approved_by})" if approved_by else ")")
    if state == RequestState.REJECTED:
        rejection = request.decisions.select_related("approver").filter(outcome=Decision.Outcome.REJECT).last()
        if rejection is None:
            return "*Rejected*"
        return f"*Rejected* by {_person(rejection.approver)}: {_escape(rejection.comment)}"
    by = f" by {approved_by}" if approved_by else ""
    if state == RequestState.APPROVED:
        return f"*Approved*{by}; provisioning starts now"
    if state == RequestState.PROVISIONING:
        return f"*Provisioning* (approved{by})"
    if state == RequestState.ACTIVE:
        return f"*Active* (approved{by}): DMS endpoint `{_escape(request.endpoint_arn)}`"
    if state == RequestState.FAILED:
        code = request.diagnosis or "none"
        known = get_diagnosis(request.diagnosis) if request.diagnosis else None
        line = f"*Failed* (approved{by}): diagnosis `{_escape(code)}`"
        if known is not None:
            line += f"\n{_escape(known.title)}. {_escape(known.remediation)}"
        return line
    return f"*{_escape(request.get_state_display())}*"


def _offers_decision(request: AccessRequest) -> tuple[bool, bool]:
    """Whether the message offers (approve, reject) now: the same states the pages offer them in."""
    if request.state == RequestState.NEEDS_REAPPROVAL:
        return True, False
    if request.state == RequestState.PENDING_APPROVAL:
        return request.preflight_status == AccessRequest.PreflightStatus.PASSED, True
    return False, False


def message_for(request: AccessRequest) -> tuple[str, list[dict]]:
    """The message's fallback text and blocks for ``request`` as it is now."""
    summary = (
        f"Request #{request.pk} by {_person(request.requester)}: DMS endpoint "
        f"{_escape(request.endpoint_identifier)} ({_escape(request.engine)}, {request.endpoint_type}) in "
        f"{_escape(request.datalake_account.name)} ({request.datalake_account.account_id}) reading a secret of "
        f"{_escape(request.remote_account.name)} ({request.remote_account.account_id})"
    )
    preflight = f"Preflight: *{request.preflight_status}*"
    if request.diagnosis and request.preflight_status != AccessRequest.PreflightStatus.PASSED:
        preflight += f" (`{_escape(request.diagnosis)}`)"
    plan = request.plan or {}
    blocks = [
        _section(summary),
        _section(f"Justification: {_escape(request.justification)}"),
        _section(_status(request)),
    ]
    if "secret_policy_statement" in plan:
        blocks.append(_section(
            f"Adds to the resource policy of the secret `{_escape(request.secret_arn)}`:\n"
            + _document(plan["secret_policy_statement"])
        ))
    if "key_policy_statement" in plan:
        key = request.resolved_kms_key_arn or request.kms_key_arn
        blocks.append(_section(
            f"Adds to the key policy of the KMS key `{_escape(key)}`:\n" + _document(plan["key_policy_statement"])
        ))
    blocks.append({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"{preflight} · plan hash `{_escape(request.plan_hash or 'none')}`"}],
    })
    approve, reject = _offers_decision(request)
    buttons = []
    if approve:
        buttons.append({"type": "button", "action_id": APPROVE, "style": "primary", "value": button_value(request),
                        "text": {"type": "plain_text", "text": "Approve this plan"}})
    if reject:
        buttons.append({"type": "button", "action_id": REJECT, "style": "danger", "value": button_value(request),
                        "text": {"type": "plain_text", "text": "Reject…"}})
    buttons.append({"type": "button", "action_id": "open", "url": notifications.request_url(request),
                    "text": {"type": "plain_text", "text": "Open in the portal"}})
    blocks.append({"type": "actions", "block_id": f"request-{request.pk}", "elements": buttons})
    text = f"Request #{request.pk}: {request.get_state_display()}"
    return text, blocks


def _with_relations(request_id: int) -> AccessRequest:
    return AccessRequest.objects.select_related("requester", "datalake_account", "remote_account").get(pk=request_id)


def post_request(request: AccessRequest) -> None:
    """Post the request to its Remote account's channel (once), if the app and the channel are set."""
    channel = request.remote_account.slack_channel
    if not slack.enabled() or not channel:
        return
    if SlackMessage.objects.filter(request_id=request.pk).exists():
        return
    request = _with_relations(request.pk)
    text, blocks = message_for(request)
    try:
        response = slack.web_client().chat_postMessage(channel=channel, text=text, blocks=blocks, unfurl_links=False)
    except slack.SLACK_ERRORS as exc:
        logger.warning("could not post request %s to Slack: %s", request.pk, exc)
        return
    # The message's own channel id (chat.update needs it) and timestamp.
    SlackMessage.objects.create(request=request, channel=response["channel"], ts=response["ts"])


def refresh_request(request_id: int) -> None:
    """Show the request as it is now in its Slack message, if it has one.

    The message row is locked while the request is read and the message
    updated, so two updates at once cannot leave an older state showing.
    """
    if not slack.enabled():
        return
    try:
        with transaction.atomic():
            message = SlackMessage.objects.select_for_update().filter(request_id=request_id).first()
            if message is None:
                return
            text, blocks = message_for(_with_relations(request_id))
            slack.web_client().chat_update(channel=message.channel, ts=message.ts, text=text, blocks=blocks)
            message.updated_at = timezone.now()
            message.save(update_fields=["updated_at"])
    except slack.SLACK_ERRORS as exc:
        logger.warning("could not update the Slack message of request %s: %s", request_id, exc)


def refresh_on_commit(request: AccessRequest) -> None:
    """Update the request's Slack message once the current transaction commits."""
    if slack.enabled():
        request_id = request.pk
        transaction.on_commit(lambda: refresh_request(request_id))
