"""Approving and rejecting a request.

An approval is bound to the plan the approver saw (its ``plan_hash``): only
approvals of the current plan count, each approver counts once per plan,
and the request is approved when the Remote account's required number is
reached. Any rejection ends the request.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from provisioning.diagnoses import get_diagnosis
from requests_app import notifications, permissions, selectors
from requests_app.audit import record_event
from requests_app.errors import InvalidTransition, NotAllowed, PlanChanged, ValidationFailed
from requests_app.models import AccessRequest, Decision, RequestState
from requests_app.services.transitions import ensure_can_move, lock_request_for, move
from requests_app.slack import messages as slack_messages
from requests_app.validation import clean_comment
from requests_app.workflow import scheduling


def ensure_decider(user, request: AccessRequest, *, verb: str) -> None:
    if request.requester_id == user.pk:
        raise NotAllowed(f"Nobody may {verb} their own request.")
    if not permissions.can_approve(user, request):
        raise NotAllowed(
            f"Only approvers of the Remote account {request.remote_account.account_id} may {verb} this request."
        )


def ensure_plan_seen(request: AccessRequest, plan_hash: str) -> None:
    """Refuse an approval of any plan but the request's current one (the one
    the approver must have been shown)."""
    if not plan_hash or plan_hash != request.plan_hash:
        raise PlanChanged(request.plan_hash)


def _ensure_first_decision(decided: bool) -> None:
    if decided:
        raise InvalidTransition("You have already decided on this plan of the request.")


def _plan_standing(user, request: AccessRequest) -> tuple[bool, int]:
    """Under the lock, in one query: whether ``user`` already decided on the
    request's current plan, and how many approvals it has so far (only
    people who are approvers now count: someone removed from the account's
    approvers after approving no longer speaks for it; a rule's approval
    counts as the account says, ``selectors.rule_approval_count``)."""
    row = (
        AccessRequest.objects.filter(pk=request.pk)
        .values(
            decided=permissions.decided_on_current_plan(user),
            approvals=selectors.current_approvals(),
            rule=selectors.current_rule_decision(),
        )
        .get()
    )
    return row["decided"], row["approvals"] + selectors.rule_approval_count(request, row["rule"])


def preflight_refusal(request: AccessRequest) -> str:
    """Why a request whose preflight failed cannot be approved, with the remedy."""
    code = request.diagnosis or request.preflight.get("diagnosis") or ""
    known = get_diagnosis(code)
    if known is None:
        return f"Preflight failed ({code or 'no diagnosis'}); fix the cause and re-run preflight before approving."
    return f"Preflight failed ({code}): {known.title}. {known.remediation}"


def _record_decision(request: AccessRequest, *, user, outcome: str, comment: str, source_ip) -> Decision:
    decision = Decision.objects.create(
        request=request, approver=user, outcome=outcome, comment=comment, plan_hash=request.plan_hash,
        approval_round=request.approval_round,
    )
    record_event(
        action=f"decision.{outcome}",
        actor=user,
        source_ip=source_ip,
        request=request,
        target_arn=request.secret_arn,
        details={"comment": comment, "plan_hash": request.plan_hash, "state": request.state},
    )
    return decision


def access_request_approve(
    *, request_id, user, plan_hash: str, comment: str = "", source_ip: str | None = None
) -> AccessRequest:
    """Record ``user``'s approval of the request's current plan, which must be
    ``plan_hash`` (the plan they were shown); approve the request (and
    schedule the grant) when enough approvers agree.

    A grant of a multi-grant request is approved with its set, whose plan
    covers every grant (``request_sets.request_set_approve``)."""
    comment = clean_comment(comment)
    with transaction.atomic():
        request = lock_request_for(user=user, request_id=request_id)
        # Who may before what the request is: one who may not approve it is told so.
        ensure_decider(user, request, verb="approve")
        if request.request_set_id is not None:
            raise InvalidTransition(
                f"Request #{request.pk} is one grant of request set #{request.request_set_id}: "
                "approve the set, whose plan covers every grant."
            )
        approve_locked(request, user=user, plan_hash=plan_hash, comment=comment, source_ip=source_ip)
    return request


def approve_locked(
    request: AccessRequest, *, user, plan_hash: str, comment: str, source_ip: str | None, notify: bool = True
) -> None:
    """``access_request_approve`` on a request its caller locked, in the caller's
    transaction (``notify``: tell the requester; a set tells them once)."""
    ensure_decider(user, request, verb="approve")
    ensure_can_move(request, RequestState.APPROVED, verb="approved")
    if request.preflight_status != AccessRequest.PreflightStatus.PASSED or not request.plan_hash:
        raise NotAllowed(preflight_refusal(request))
    ensure_plan_seen(request, plan_hash)
    decided, approvals = _plan_standing(user, request)
    _ensure_first_decision(decided)
    _record_decision(request, user=user, outcome=Decision.Outcome.APPROVE, comment=comment, source_ip=source_ip)
    # Theirs counts too: ``ensure_decider`` found them an approver of the Remote account now.
    approvals += 1
    required = request.remote_account.required_approvals
    if approvals >= required:
        move(
            request,
            RequestState.APPROVED,
            verb="approved",
            action="request.approved",
            actor=user,
            source_ip=source_ip,
            details={"comment": comment, "approvals": approvals, "required_approvals": required},
            decided_at=timezone.now(),
        )
        scheduling.schedule_grant(request)
    else:
        # Not yet enough approvals: the Slack message shows who approved so far.
        slack_messages.refresh_on_commit(request)
    if notify:
        transaction.on_commit(lambda: notifications.notify_decided(request))


def access_request_reject(
    *, request_id, user, comment: str, source_ip: str | None = None, notify: bool = True
) -> AccessRequest:
    """Reject the request with a comment; one rejection ends it (``notify``:
    tell the requester; a multi-grant request tells them once)."""
    comment = clean_comment(comment)
    with transaction.atomic():
        request = lock_request_for(user=user, request_id=request_id)
        ensure_decider(user, request, verb="reject")
        ensure_can_move(request, RequestState.REJECTED, verb="rejected")
        if not comment:
            raise ValidationFailed({"comment": ["A comment is required to reject a request."]})
        _ensure_first_decision(permissions.has_decided_on_current_plan(user, request))
        _record_decision(request, user=user, outcome=Decision.Outcome.REJECT, comment=comment, source_ip=source_ip)
        move(
            request,
            RequestState.REJECTED,
            verb="rejected",
            action="request.rejected",
            actor=user,
            source_ip=source_ip,
            details={"comment": comment},
            decided_at=timezone.now(),
        )
        if notify:
            transaction.on_commit(lambda: notifications.notify_decided(request))
    return request
