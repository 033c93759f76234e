"""Telling people that a request needs them or has moved on.

Mail goes through Django's mail settings (console backend unless configured);
a Slack-compatible incoming webhook (``NOTIFY_WEBHOOK_URL``) gets a one-line
summary. The services and the workflow call these after their transaction
commits, so a notification never announces a change that was rolled back.
A mail server or webhook that is down is logged and never fails the caller:
the change has already happened, and the portal shows it either way.
"""
from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from requests_app.models import AccessRequest, Decision, RequestState

logger = logging.getLogger(__name__)

SUBJECT_PREFIX = "[DMS Access Portal]"


def request_url(request: AccessRequest) -> str:
    """Where a person reads the request in the browser."""
    return settings.PORTAL_BASE_URL + reverse("web:request_detail", args=[request.pk])


def _summary(request: AccessRequest) -> str:
    return (
        f"Request #{request.pk}: DMS endpoint {request.endpoint_identifier} ({request.engine}, "
        f"{request.endpoint_type}) in {request.datalake_account} reading {request.secret_arn}"
    )


def notify_submitted(request: AccessRequest) -> None:
    """Tell the approvers of the request's Remote account that it awaits them."""
    approvers = _addresses(
        request.remote_account.approvers.exclude(pk=request.requester_id).filter(is_active=True)
    )
    body = "\n".join(
        [
            f"{_person(request.requester)} asks for access and needs your approval.",
            "",
            _summary(request),
            f"Justification: {request.justification}",
            f"Preflight: {request.preflight_status}" + (f" ({request.diagnosis})" if request.diagnosis else ""),
            "",
            f"Review it: {request_url(request)}",
        ]
    )
    _mail(f"{SUBJECT_PREFIX} #{request.pk} awaits your approval", body, approvers)
    _webhook(f"New request #{request.pk} from {_person(request.requester)} awaits approval: {request_url(request)}")


def notify_decided(request: AccessRequest) -> None:
    """Tell the requester what the approvers decided (or that one approval of several is in)."""
    decision = request.decisions.select_related("approver").order_by("-created_at", "-id").first()
    if request.state == RequestState.REJECTED:
        verdict = "was rejected"
    elif request.state == RequestState.PENDING_APPROVAL:
        given = request.decisions.filter(outcome=Decision.Outcome.APPROVE, plan_hash=request.plan_hash).count()
        verdict = f"has {given} of {request.remote_account.required_approvals} approvals"
    else:
        verdict = "was approved; provisioning starts now"
    lines = [f"Your request #{request.pk} {verdict}.", "", _summary(request)]
    if decision is not None:
        lines.append(f"Last decision: {decision.get_outcome_display()} by {_person(decision.approver)}")
        if decision.comment:
            lines.append(f"Comment: {decision.comment}")
    lines += ["", request_url(request)]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} {verdict}", "\n".join(lines), _addresses([request.requester]))
    _webhook(f"Request #{request.pk} {verdict}: {request_url(request)}")


def notify_finished(request: AccessRequest) -> None:
    """Tell the requester that provisioning finished: active, or failed with its diagnosis."""
    if request.state == RequestState.ACTIVE:
        verdict = "is active"
        detail = [f"DMS endpoint: {request.endpoint_arn}", f"Role: {request.role_arn}"]
    else:
        verdict = "failed"
        failed_step = request.steps.filter(status="failed").order_by("phase", "position").first()
        detail = [f"Diagnosis: {request.diagnosis or 'none'}"]
        if failed_step is not None:
            detail.append(f"Failed step: {failed_step.name}: {failed_step.error}")
    lines = [f"Your request #{request.pk} {verdict}.", "", _summary(request), *detail, "", request_url(request)]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} {verdict}", "\n".join(lines), _addresses([request.requester]))
    suffix = f" ({request.diagnosis})" if request.state != RequestState.ACTIVE and request.diagnosis else ""
    _webhook(f"Request #{request.pk} {verdict}{suffix}: {request_url(request)}")


def _person(user) -> str:
    return user.get_full_name() or user.get_username()


def _addresses(users: Iterable) -> list[str]:
    return sorted({user.email for user in users if user.email})


def _mail(subject: str, body: str, recipients: list[str]) -> None:
    if not recipients:
        logger.info("notification not mailed, nobody to mail: %s", subject)
        return
    try:
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
        request.remote_account.approvers.exclude(pk=request.requester_id).filter(is_active=True)
    )
    lines = [
        f"{_person(extension.requested_by)} asks to keep grant #{request.pk} until "
        f"{extension.expires_at:%Y-%m-%d %H:%M %Z} (now until {extension.previous_expires_at:%Y-%m-%d %H:%M %Z}).",
        "The plan stays as approved; only the expiry moves.",
        "",
        _summary(request),
    ]
    if extension.justification:
        lines.append(f"Justification: {extension.justification}")
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
        [request.requester, *request.remote_account.approvers.filter(is_active=True)]
    )
    findings = (request.drift or {}).get("findings", [])
    lines = [
        f"Grant #{request.pk} no longer matches its approved plan in AWS ({', '.join(kinds)}).",
        "",
        _summary(request),
        "",
        *[f"- {finding.get('message', finding.get('kind'))}" for finding in findings],
        "",
        f"Repair it (re-runs the grant's steps) or revoke it: {request_url(request)}",
    ]
    _mail(f"{SUBJECT_PREFIX} #{request.pk} drifted from its plan", "\n".join(lines), people)
    _webhook(f"Grant #{request.pk} drifted ({', '.join(kinds)}): {request_url(request)}")


def notify_audit_chain_broken(report) -> None:
    """Tell the portal's administrators that the audit chain no longer verifies."""
    from django.contrib.auth import get_user_model

    admins = _addresses(get_user_model().objects.filter(is_superuser=True, is_active=True))
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
