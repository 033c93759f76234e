"""Telling people that a request needs them or has moved on.

Mail goes through Django's mail settings (console backend unless configured);
a Slack-compatible incoming webhook (``NOTIFY_WEBHOOK_URL``) gets a one-line
summary. The services and the workflow call these after their transaction
commits, so a notification never announces a change that was rolled back.
A mail server or webhook that is down is logged and never fails the caller:
the change has already happened, and the portal shows it either way.

Text that people or the identity provider chose (names, justifications,
comments, error texts) is made inert on the way out: mail is plain text,
whose subject and addresses can carry no extra header and whose body shows
such text on its own indented lines; the webhook gets it escaped for Slack's
markup, so it can neither mention the channel nor forge a link.
"""
from __future__ import annotations

import difflib
import http.client
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.urls import reverse

from requests_app import visibility
from requests_app.membership import approvers_of
from requests_app.models import AccessRequest, Decision, RequestState
from requests_app.permissions import ADMINISTER_PORTAL, has_remote_drift
from requests_app.slack import messages as slack_messages

logger = logging.getLogger(__name__)

SUBJECT_PREFIX = "[DMS Access Portal]"
SUBJECT_MAX = 200

# Characters that break a line (or a header) anywhere: ASCII controls, DEL,
# the C1 controls and Unicode's own line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# An @ that starts a word: Slack-style services turn "@here", "@channel" and
# "@everyone" (and @names) into mentions.
_MENTION = re.compile(r"@(?=\w)")
_ZERO_WIDTH_SPACE = "\u200b"


def one_line(text) -> str:
    """``text`` on one line: every control or line-breaking character becomes a space."""
    return _CONTROL.sub(" ", str(text))


def quoted(text, indent: str = "    ") -> str:
    """Multi-line ``text`` for a plain-text body: control characters dropped,
    and every line after the first indented, so nothing a person wrote can pass
    for a line of the portal's own (a fake "Review it:" link, a fake approval)."""
    lines = [one_line(line) for line in _LINE_BREAK.split(str(text))]
    return ("\n" + indent).join(lines)


def slack_escape(text) -> str:
    """``text`` as literal text in Slack's markup: &, < and > escaped as Slack
    documents (so ``<!channel>`` or ``<https://evil|click>`` stay text), bare
    @-mentions broken by a zero-width space, all on one line."""
    escaped = one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@" + _ZERO_WIDTH_SPACE, escaped)


def request_url(request: AccessRequest) -> str:
    """Where a person reads the request in the browser."""
    return settings.PORTAL_BASE_URL + reverse("web:request_detail", args=[request.pk])


def _summary(request: AccessRequest) -> str:
    return one_line(
        f"Request #{request.pk}: DMS endpoint {request.endpoint_identifier} ({request.engine}, "
        f"{request.endpoint_type}) in {request.datalake_account} reading {request.secret_arn}"
    )


def notify_submitted(request: AccessRequest) -> None:
    """Tell the approvers of the request's Remote account that it awaits them."""
    approvers = _addresses(
        approvers_of(request.remote_account_id).exclude(pk=request.requester_id).filter(is_active=True)
    )
    body = "\n".join(
        [
            f"{_person(request.requester)} asks for access and needs your approval.",
            "",
            _summary(request),
            f"Justification: {quoted(request.justification)}",
            f"Preflight: {request.preflight_status}" + (f" ({request.diagnosis})" if request.diagnosis else ""),
            "",
            f"Review it: {request_url(request)}",
        ]
    )
    _mail(f"{SUBJECT_PREFIX} #{request.pk} awaits your approval", body, approvers)
    _webhook(
        f"New request #{request.pk} from {slack_escape(_person(request.requester))} awaits approval: "
        f"{request_url(request)}"
    )
    # With the Slack app: the message with Approve / Reject in the Remote account's channel.
    slack_messages.post_request(request)


def request_set_url(request_set) -> str:
    """Where a person reads a multi-grant request in the browser."""
    return settings.PORTAL_BASE_URL + reverse("web:request_set_detail", args=[request_set.pk])


def notify_set_submitted(request_set) -> None:
    """Tell the approvers of the set's Remote account, once, that its grants await them."""
    grants = list(request_set.grants.select_related("datalake_account").order_by("pk"))
    approvers = _addresses(
        approvers_of(request_set.remote_account_id).exclude(pk=request_set.requester_id).filter(is_active=True)
    )
    failed = [grant for grant in grants if grant.preflight_status != AccessRequest.PreflightStatus.PASSED]
    body = "\n".join(
        [
            f"{_person(request_set.requester)} asks for access to {len(grants)} databases and needs your approval.",
            "",
            *(_summary(grant) for grant in grants),
            "",
            f"Justification: {quoted(request_set.justification)}",
            f"Preflight: {len(grants) - len(failed)} of {len(grants)} passed",
            "",
            f"Review the plan and approve it once: {request_set_url(request_set)}",
        ]
    )
    subject = f"{SUBJECT_PREFIX} request set #{request_set.pk} ({len(grants)} grants) awaits your approval"
    _mail(subject, body, approvers)
    _webhook(
        f"New request set #{request_set.pk} ({len(grants)} grants) from "
        f"{slack_escape(_person(request_set.requester))} awaits approval: {request_set_url(request_set)}"
    )


def notify_set_decided(request_set, grants: Iterable[AccessRequest], *, comment: str = "") -> None:
    """Tell the requester, once, what a decision on their multi-grant request did to ``grants``
    (those it decided on): all rejected, all approved, or one more approval of several."""
    grants = list(grants)
    approved = [grant for grant in grants if grant.state == RequestState.APPROVED]
    if grants and all(grant.state == RequestState.REJECTED for grant in grants):
        verdict = f"was rejected ({len(grants)} grants)"
    elif len(approved) == len(grants):
        verdict = f"was approved ({len(grants)} grants); provisioning starts now"
    else:
        verdict = f"has one more approval: {len(approved)} of its {len(grants)} waiting grants are approved"
    lines = [f"Your request set #{request_set.pk} {verdict}.", ""]
    if comment:
        lines += [f"Comment: {quoted(comment)}", ""]
    body = "\n".join([*lines, request_set_url(request_set)])
    _mail(f"{SUBJECT_PREFIX} request set #{request_set.pk} {verdict}", body, _addresses([request_set.requester]))
    _webhook(f"Request set #{request_set.pk} {verdict}: {request_set_url(request_set)}")


def notify_decided(request: AccessRequest) -> None:
    """Tell the requester what the approvers decided (or that one approval of several is in)."""
    decision = request.decisions.select_related("approver").order_by("-created_at", "-id").first()
    if request.state == RequestState.REJECTED:
        verdict = "was rejected"
    elif request.state in (RequestState.PENDING_APPROVAL, RequestState.NEEDS_REAPPROVAL):
        given = request.decisions.filter(
            outcome=Decision.Outcome.APPROVE, plan_hash=request.plan_hash, approval_round=request.approval_round
        ).count()
        verdict = f"has {given} of {request.remote_account.required_approvals} approvals"
    else:
        verdict = "was approved; provisioning starts now"
    lines = [f"Your request #{request.pk} {verdict}.", "", _summary(request)]
    if decision is not None:
        lines.append(f"Last decision: {decision.get_outcome_display()} by {_person(decision.approver)}")
        if decision.comment:
            lines.append(f"Comment: {quoted(decision.comment)}")
    lines += ["", request_url(request)]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} {verdict}", "\n".join(lines), _addresses([request.requester]))
    _webhook(f"Request #{request.pk} {verdict}: {request_url(request)}")


def notify_finished(request: AccessRequest) -> None:
    """Tell the requester that provisioning finished: active, or failed with its diagnosis.

    A grant of a request set is told with its set, once none of the set's
    grants is being provisioned any more."""
    if request.request_set_id is not None:
        _notify_set_finished(request.request_set)
        return
    if request.state == RequestState.ACTIVE:
        verdict = "is active"
        detail = [f"DMS endpoint: {request.endpoint_arn}", f"Role: {request.role_arn}"]
    else:
        verdict = "failed"
        failed_step = request.steps.filter(status="failed").order_by("phase", "position").first()
        detail = [f"Diagnosis: {request.diagnosis or 'none'}"]
        if failed_step is not None:
            error = visibility.step_documents_for(request.requester, request, failed_step)[2]
            detail.append(f"Failed step: {failed_step.name}: {quoted(error)}")
    lines = [f"Your request #{request.pk} {verdict}.", "", _summary(request), *detail, "", request_url(request)]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} {verdict}", "\n".join(lines), _addresses([request.requester]))
    suffix = f" ({request.diagnosis})" if request.state != RequestState.ACTIVE and request.diagnosis else ""
    _webhook(f"Request #{request.pk} {verdict}{suffix}: {request_url(request)}")


def _notify_set_finished(request_set) -> None:
    grants = list(request_set.grants.select_related("datalake_account").order_by("pk"))
    if any(grant.state in (RequestState.APPROVED, RequestState.PROVISIONING) for grant in grants):
        return  # the last of them tells
    settled = [grant for grant in grants if grant.state in (RequestState.ACTIVE, RequestState.FAILED)]
    failed = [grant for grant in settled if grant.state == RequestState.FAILED]
    verdict = (
        f"is active ({len(settled)} grants)" if not failed
        else f"has {len(failed)} failed grant(s) of {len(settled)} provisioned"
    )  # fmt: skip
    lines = [f"Your request set #{request_set.pk} {verdict}.", ""]
    lines += [f"{_summary(grant)}: {grant.get_state_display().lower()}" + (f" ({grant.diagnosis})" if grant.diagnosis
              and grant.state == RequestState.FAILED else "") for grant in settled]  # fmt: skip
    if failed:
        lines += ["", "A failed grant is retried alone from its own page; the others stay active."]
    lines += ["", request_set_url(request_set)]
    _mail(f"{SUBJECT_PREFIX} Request set #{request_set.pk} {verdict}", "\n".join(lines), _addresses([request_set.requester]))
    _webhook(f"Request set #{request_set.pk} {verdict}: {request_set_url(request_set)}")


def _person(user) -> str:
    """A person's name on one line (it may come from the identity provider)."""
    return one_line(user.get_full_name() or user.get_username())


def _mailable(address: str) -> bool:
    # An address from the identity provider could carry a line break and a
    # header of its own; such an address is skipped, not the whole message.
    if not address or _CONTROL.search(address):
        return False
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def _addresses(users: Iterable) -> list[str]:
    return sorted({user.email for user in users if _mailable(user.email)})


def _mail(subject: str, body: str, recipients: list[str]) -> None:
    subject = one_line(subject)[:SUBJECT_MAX]
    if not recipients:
        logger.info("notification not mailed, nobody to mail: %s", subject)
        return
    try:
        # Plain text only: no HTML part for a name or a comment to end up in.
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:
        logger.exception("could not mail notification %r", subject)


def _webhook(text: str) -> None:
    url = settings.NOTIFY_WEBHOOK_URL
    if not url:
        return
    data = json.dumps({"text": text}).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT) as response:
            response.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        # urllib raises HTTPError (a URLError) for 4xx/5xx answers too.
        logger.warning("notification webhook failed: %s", exc)


def notify_expiry_reminder(request: AccessRequest) -> None:
    """Remind the requester that the grant expires soon, and how to keep it."""
    lines = [
        f"Your grant #{request.pk} expires at {request.expires_at:%Y-%m-%d %H:%M %Z}; the portal then revokes it.",
        "",
        _summary(request),
        "",
        f"To keep it, ask for a later expiry (the approvers decide): {request_url(request)}",
    ]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} expires soon", "\n".join(lines), _addresses([request.requester]))
    _webhook(f"Grant #{request.pk} expires at {request.expires_at:%Y-%m-%d %H:%M %Z}: {request_url(request)}")


def notify_extension_requested(extension) -> None:
    """Tell the Remote account's approvers that a grant's requester asks for a later expiry."""
    request = extension.request
    approvers = _addresses(
        approvers_of(request.remote_account_id).exclude(pk=request.requester_id).filter(is_active=True)
    )
    lines = [
        f"{_person(extension.requested_by)} asks to keep grant #{request.pk} until "
        f"{extension.expires_at:%Y-%m-%d %H:%M %Z} (now until {extension.previous_expires_at:%Y-%m-%d %H:%M %Z}).",
        "The plan stays as approved; only the expiry moves.",
        "",
        _summary(request),
    ]
    if extension.justification:
        lines.append(f"Justification: {quoted(extension.justification)}")
    lines += ["", f"Decide: {request_url(request)}"]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} asks for a later expiry", "\n".join(lines), approvers)
    _webhook(f"Grant #{request.pk} asks for a later expiry: {request_url(request)}")


def notify_extension_decided(extension) -> None:
    """Tell the requester whether the grant's new expiry was approved."""
    request = extension.request
    if extension.state == "approved":
        verdict = f"was extended until {extension.expires_at:%Y-%m-%d %H:%M %Z}"
    else:
        verdict = f"was not extended; it still expires at {extension.previous_expires_at:%Y-%m-%d %H:%M %Z}"
    lines = [f"Your grant #{request.pk} {verdict}.", "", _summary(request), "", request_url(request)]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} {verdict}", "\n".join(lines), _addresses([request.requester]))
    _webhook(f"Grant #{request.pk} {verdict}: {request_url(request)}")


def notify_drift(request: AccessRequest, kinds: list[str]) -> None:
    """Tell the requester and the Remote account's approvers that a grant no longer matches AWS."""
    people = _addresses(
        [request.requester, *approvers_of(request.remote_account_id).filter(is_active=True)]
    )
    findings = (request.drift or {}).get("findings", [])
    if has_remote_drift(request.drift):
        what_next = (
            f"A statement of the grant in the Remote account {request.remote_account.account_id}'s policies was "
            "removed or edited there. It stays so until that account's approvers choose: repair (put it back) or "
            "revoke the grant. The requester may ask them for a repair."
        )
    else:
        what_next = "Only the DataLake account drifted: the requester may repair it (re-runs only the DataLake steps)."
    lines = [
        f"Grant #{request.pk} no longer matches its approved plan in AWS ({', '.join(kinds)}).",
        "",
        _summary(request),
        "",
        *[f"- {one_line(finding.get('message', finding.get('kind')))} ({one_line(finding.get('resource', ''))})" for finding in findings],
        "",
        what_next,
        f"Repair or revoke it: {request_url(request)}",
    ]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} drifted from its plan", "\n".join(lines), people)
    _webhook(f"Grant #{request.pk} drifted ({', '.join(kinds)}): {request_url(request)}")


def notify_repair_requested(repair) -> None:
    """Tell the Remote account's approvers that a grant's requester asks them to put its statements back."""
    request = repair.request
    approvers = _addresses(
        approvers_of(request.remote_account_id).exclude(pk=request.requester_id).filter(is_active=True)
    )
    lines = [
        f"{_person(repair.requested_by)} asks to repair grant #{request.pk}: to put back what drifted in the "
        f"Remote account {request.remote_account.account_id}.",
        "Nothing is written until enough of you approve; the plan stays as approved.",
        "",
        _summary(request),
        "",
        *[
            f"- {one_line(finding.get('message', finding.get('kind')))} ({one_line(finding.get('resource', ''))})"
            for finding in repair.findings
        ],
    ]
    if repair.justification:
        lines.append(f"Justification: {quoted(repair.justification)}")
    lines += ["", f"Decide: {request_url(request)}"]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} asks for a repair", "\n".join(lines), approvers)
    _webhook(f"Grant #{request.pk} asks for a repair of its Remote statements: {request_url(request)}")


def notify_repair_decided(repair) -> None:
    """Tell the requester whether the Remote approvers let the grant be repaired."""
    request = repair.request
    verdict = "is being repaired" if repair.state == "approved" else "will not be repaired"
    lines = [f"Your grant #{request.pk} {verdict}.", "", _summary(request), "", request_url(request)]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} {verdict}", "\n".join(lines), _addresses([request.requester]))
    _webhook(f"Grant #{request.pk} {verdict}: {request_url(request)}")


def notify_account_members_changed(account, *, before: dict, after: dict, changed_by: str) -> None:
    """Tell an account's approvers (before and after the change) who now approves
    and files for it, and how many approvals it needs."""
    usernames = set(before["approvers"]) | set(after["approvers"])
    user_model = get_user_model()
    people = _addresses(
        user_model.objects.filter(**{f"{user_model.USERNAME_FIELD}__in": usernames}, is_active=True)
    )
    name = one_line(account.name)

    def listed(names: list[str]) -> str:
        return one_line(", ".join(names) or "nobody")

    lines = [f"{one_line(changed_by)} changed who decides for {name} ({account.account_id}).", ""]
    for part, label in (
        ("approvers", "Approvers"), ("approver_groups", "Approver groups"),
        ("requesters", "Requesters"), ("requester_groups", "Requester groups"),
    ):
        if before.get(part, []) != after.get(part, []):
            lines.append(f"{label}: {listed(after.get(part, []))} (were: {listed(before.get(part, []))})")
    if before["required_approvals"] != after["required_approvals"]:
        lines.append(
            f"Required approvals: {after['required_approvals']} (was: {before['required_approvals']})"
        )
    lines += ["", "If you did not expect this, tell the portal's administrators."]
    _mail(f"{SUBJECT_PREFIX} {name} ({account.account_id}): approvers or requesters changed", "\n".join(lines), people)
    _webhook(
        f"{slack_escape(changed_by)} changed the approvers, requesters or rules of account "
        f"{slack_escape(account.name)} ({account.account_id})"
    )


def plan_diff(previous: dict, plan: dict) -> str:
    """A unified diff of the plan's documents, old against new, one changed document after another."""
    parts = []
    for key in sorted(set(previous) | set(plan)):
        if previous.get(key) == plan.get(key):
            continue
        old = json.dumps(previous.get(key), indent=2, sort_keys=True).splitlines()
        new = json.dumps(plan.get(key), indent=2, sort_keys=True).splitlines()
        parts.extend(difflib.unified_diff(old, new, f"approved/{key}", f"now/{key}", lineterm=""))
    return "\n".join(parts)


def notify_plan_changed(request: AccessRequest, previous_plan: dict, previous_hash: str) -> None:
    """Tell the Remote account's approvers that the worker found another plan than they approved,
    with the difference; tell the requester that the grant waits for them."""
    approvers = _addresses(
        approvers_of(request.remote_account_id).exclude(pk=request.requester_id).filter(is_active=True)
    )
    body = "\n".join(
        [
            f"Request #{request.pk} was approved, but before its first write the portal found that AWS now "
            "gives another plan than the one you approved. Nothing was written.",
            "Approve the new plan to resume provisioning, or revoke the request.",
            "",
            _summary(request),
            f"Approved plan hash: {previous_hash}",
            f"New plan hash:      {request.plan_hash}",
            "",
            plan_diff(previous_plan, request.plan),
            "",
            f"Review it: {request_url(request)}",
        ]
    )
    _mail(f"{SUBJECT_PREFIX} #{request.pk} changed since approval: approve the new plan", body, approvers)
    requester = "\n".join(
        [
            f"Your request #{request.pk} waits for its approvers again: AWS changed since they approved it "
            "(nothing was written).",
            "",
            _summary(request),
            "",
            request_url(request),
        ]
    )
    _mail(f"{SUBJECT_PREFIX} #{request.pk} needs re-approval", requester, _addresses([request.requester]))
    _webhook(f"Request #{request.pk} needs re-approval: its plan changed before the first write: {request_url(request)}")


def notify_audit_chain_broken(report) -> None:
    """Tell the portal's administrators that the audit chain no longer verifies."""
    # Portal administrators: the permission held directly, through a group, or as a superuser.
    admins = _addresses(
        get_user_model().objects.with_perm(ADMINISTER_PORTAL, backend="django.contrib.auth.backends.ModelBackend")
        .filter(is_active=True)
    )
    where = f"at event {report.first_broken_id}" if report.first_broken_id else "at its end"
    lines = [
        f"The audit trail's chain does not verify {where}: {report.reason}.",
        "",
        "Someone may have altered, deleted or replaced audit events in the database. Compare the trail with the "
        "latest checkpoint outside the database: manage.py verify_audit_chain --since-checkpoint",
        "",
        f"{settings.PORTAL_BASE_URL}{reverse('web:audit_log')}",
    ]
    _mail(f"{SUBJECT_PREFIX} The audit trail does not verify", "\n".join(lines), admins)
    _webhook(f"The audit trail does not verify {where}: {report.reason}")


def _waited(request: AccessRequest, now) -> str:
    hours = int((now - request.created_at).total_seconds() // 3600)
    return f"{hours // 24} days {hours % 24} hours" if hours >= 24 else f"{hours} hours"


def _waiting(request: AccessRequest) -> tuple[str, str, list[str]]:
    """How a message about a request waiting for its approvers names it, where
    to read it, and what it asks for: a grant of a request set is told as its
    set (its grants still waiting), whose page is where it is decided."""
    if request.request_set_id is None:
        return f"request #{request.pk}", request_url(request), [_summary(request)]
    grants = request.request_set.grants.filter(state=RequestState.PENDING_APPROVAL).select_related("datalake_account")
    return (
        f"request set #{request.request_set_id}",
        request_set_url(request.request_set),
        [_summary(grant) for grant in grants.order_by("pk")] or [_summary(request)],
    )


def notify_approval_reminder(request: AccessRequest, *, now) -> None:
    """Remind the Remote account's approvers (not the requester) that a request still waits for them."""
    approvers = _addresses(
        approvers_of(request.remote_account_id).exclude(pk=request.requester_id).filter(is_active=True)
    )
    name, url, summaries = _waiting(request)
    body = "\n".join(
        [
            f"Reminder {request.approval_reminders}: this {name.split(' #')[0]} has waited {_waited(request, now)} "
            "for a decision.",
            "",
            *summaries,
            "",
            f"Review it: {url}",
        ]
    )
    _mail(f"{SUBJECT_PREFIX} {name.capitalize()} still awaits your approval", body, approvers)
    _webhook(f"{name.capitalize()} has waited {_waited(request, now)} for approval: {url}")


def notify_escalated(request: AccessRequest, contacts: Iterable, *, now) -> None:
    """Tell the account's escalation contacts that a request waits too long.

    They may not be able to see the request, so the message names only the
    request, the account, how long it waited and who decides: no secret, no
    justification."""
    approver_names = sorted(user.get_username() for user in approvers_of(request.remote_account_id))
    account = request.remote_account
    name, url, _ = _waiting(request)
    body = "\n".join(
        [
            f"{name.capitalize()} for account {one_line(account.name)} ({account.account_id}) has waited "
            f"{_waited(request, now)} for its approvers, and is escalated to you.",
            f"Its approvers: {one_line(', '.join(approver_names) or 'nobody')}.",
            f"It expires unanswered after {account.expire_pending_after_days} days.",
            "",
            f"The request (for its approvers and administrators): {url}",
        ]
    )
    _mail(f"{SUBJECT_PREFIX} {name.capitalize()} escalated: waiting for approval", body, _addresses(contacts))
    _webhook(
        f"{name.capitalize()} for account {slack_escape(account.name)} escalated after waiting "
        f"{_waited(request, now)} for approval"
    )


def notify_pending_expired(request: AccessRequest) -> None:
    """Tell the requester that nobody decided on their request (or request set) in time."""
    days = request.remote_account.expire_pending_after_days
    name, url, _ = _waiting(request)
    expired = [request]
    if request.request_set_id is not None:
        expired = list(request.request_set.grants.filter(state=RequestState.EXPIRED).select_related("datalake_account"))
    body = "\n".join(
        [
            f"Nobody decided on your {name} within {days} days: it expired and grants nothing.",
            "",
            *(_summary(grant) for grant in expired),
            "",
            f"File it again if you still need the access: {url}",
        ]
    )
    _mail(f"{SUBJECT_PREFIX} {name.capitalize()} expired unanswered", body, _addresses([request.requester]))
