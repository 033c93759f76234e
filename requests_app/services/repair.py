"""Repairing a drifted grant, and the repair requests the Remote approvers decide.

Who may put a grant back depends on where it drifted:

- drift confined to the DataLake account (the role or the endpoint changed
  or deleted) is the requester's side: the requester, a Remote approver or
  an administrator repairs it at once, and only the DataLake steps run;
- a portal statement removed from (or edited in) a Remote secret or key
  policy may have been removed on purpose: it stays removed until the Remote
  account decides. An administrator repairs at once; a Remote approver's
  repair counts as one approval and runs once the account's required number
  of approvers agreed; the requester may only ask (a repair request), which
  those approvers decide like an extension: a quorum of distinct people,
  never the requester.

A repair re-runs only the steps that put back what drifted (preflight first,
verify last): the request goes from active to provisioning and back, and the
plan and its approvals stay as they are, because the steps put back exactly
the plan.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from provisioning.drift import (
    DATALAKE,
    ENDPOINT_MISSING,
    ENDPOINT_SETTINGS_CHANGED,
    KEY_STATEMENT_CHANGED,
    KEY_STATEMENT_MISSING,
    ROLE_INLINE_POLICY_CHANGED,
    ROLE_MISSING,
    ROLE_RECREATED,
    ROLE_TRUST_POLICY_CHANGED,
    SECRET_STATEMENT_CHANGED,
    SECRET_STATEMENT_MISSING,
    finding_account,
)
from provisioning.steps import table
from requests_app import membership, notifications, permissions
from requests_app.audit import record_event
from requests_app.errors import InvalidTransition, NotAllowed, ValidationFailed
from requests_app.models import AccessRequest, RepairRequest, RequestState
from requests_app.services.decisions import ensure_plan_seen
from requests_app.services.transitions import lock_request_for, move
from requests_app.validation import clean_comment
from requests_app.workflow import scheduling

JUSTIFICATION_MAX = 4000

_STEP_FOR_KIND = {
    ROLE_MISSING: table.CREATE_ROLE,
    ROLE_TRUST_POLICY_CHANGED: table.CREATE_ROLE,
    ROLE_INLINE_POLICY_CHANGED: table.CREATE_ROLE,
    ENDPOINT_MISSING: table.CREATE_ENDPOINT,
    ENDPOINT_SETTINGS_CHANGED: table.CREATE_ENDPOINT,
    SECRET_STATEMENT_MISSING: table.GRANT_SECRET_POLICY,
    SECRET_STATEMENT_CHANGED: table.GRANT_SECRET_POLICY,
    KEY_STATEMENT_MISSING: table.GRANT_KEY_POLICY,
    KEY_STATEMENT_CHANGED: table.GRANT_KEY_POLICY,
}


def repair_steps(findings: list[dict]) -> list[str]:
    """The grant steps that put back what ``findings`` report, in the runbook's order.

    Preflight runs first (it checks AWS again before the first write) and
    verify last. A statement that names a deleted role needs the role first;
    a finding of an unknown kind re-runs the whole grant.
    """
    if not findings:
        return list(table.names(table.GRANT))
    names = {table.PREFLIGHT, table.VERIFY}
    for finding in findings:
        kind, resource = finding.get("kind", ""), finding.get("resource", "") or ""
        if kind == ROLE_RECREATED:
            names.add(table.CREATE_ROLE)
            if finding_account(kind, resource) != DATALAKE:
                names.add(table.GRANT_KEY_POLICY if ":kms:" in resource else table.GRANT_SECRET_POLICY)
        elif kind in _STEP_FOR_KIND:
            names.add(_STEP_FOR_KIND[kind])
        else:
            return list(table.names(table.GRANT))
    return [name for name in table.names(table.GRANT) if name in names]


def _drift_findings(request: AccessRequest) -> list[dict]:
    drift = request.drift or {}
    if not drift.get("drifted"):
        raise InvalidTransition(f"Grant #{request.pk} has not drifted from its plan: there is nothing to repair.")
    return list(drift.get("findings") or [])


def _pending_repair(request: AccessRequest) -> RepairRequest | None:
    return RepairRequest.objects.select_for_update().filter(request=request, state=RepairRequest.State.PENDING).first()


def _ensure_active(request: AccessRequest, what: str) -> None:
    if request.state != RequestState.ACTIVE:
        raise InvalidTransition(
            f"Request #{request.pk} is {RequestState(request.state).label.lower()}: only an active grant {what}."
        )


def _start_repair(request: AccessRequest, *, user, findings: list[dict], source_ip, repair=None) -> None:
    steps = repair_steps(findings)
    move(
        request, RequestState.PROVISIONING, verb="repaired", action="grant.repair_requested",
        actor=user, source_ip=source_ip,
        details={
            "drift_kinds": sorted({f.get("kind", "") for f in findings}) or (request.drift or {}).get("kinds", []),
            "steps": steps,
            "repair": repair.pk if repair is not None else None,
        },
    )
    scheduling.schedule_grant_steps(request, steps)


def _audit_repair(action: str, request: AccessRequest, repair: RepairRequest, *, user, source_ip, **details) -> None:
    record_event(
        action=action,
        actor=user,
        source_ip=source_ip,
        request=request,
        target_arn=request.secret_arn,
        details={
            "repair": repair.pk,
            "findings": [{"kind": f.get("kind"), "resource": f.get("resource")} for f in repair.findings],
            "plan_hash": request.plan_hash,
            **details,
        },
    )


def _current_approvals(request: AccessRequest, repair: RepairRequest) -> int:
    # As for approvals: only people who are approvers now count, never the requester.
    return (
        repair.approved_by.filter(pk__in=membership.approvers_of(request.remote_account_id).values("pk"))
        .exclude(pk=request.requester_id)
        .count()
    )


def _approve(request: AccessRequest, repair: RepairRequest, *, user, comment: str, source_ip) -> None:
    """Count ``user``'s approval of ``repair``; start the repair once enough approvers agreed."""
    if repair.approved_by.filter(pk=user.pk).exists():
        raise InvalidTransition("You have already approved this repair.")
    repair.approved_by.add(user)
    approvals = _current_approvals(request, repair)
    required = request.remote_account.required_approvals
    _audit_repair("decision.repair_approve", request, repair, user=user, source_ip=source_ip,
                  comment=comment, approvals=approvals, required_approvals=required)
    if approvals >= required:
        repair.state = RepairRequest.State.APPROVED
        repair.decided_at = timezone.now()
        repair.save(update_fields=["state", "decided_at"])
        _start_repair(request, user=user, findings=repair.findings, source_ip=source_ip, repair=repair)
        transaction.on_commit(lambda: notifications.notify_repair_decided(repair))


def access_request_repair(
    *, request_id, user, justification: str = "", source_ip: str | None = None
) -> AccessRequest:
    """Put a drifted grant back to its plan, or ask the Remote approvers to (see the module's docstring)."""
    justification = (justification or "").strip()
    if len(justification) > JUSTIFICATION_MAX:
        raise ValidationFailed({"justification": [f"Must be at most {JUSTIFICATION_MAX} characters."]})
    with transaction.atomic():
        request = lock_request_for(user=user, request_id=request_id)
        if not permissions.can_repair(user, request):
            raise NotAllowed(
                "Only the requester, an approver of the Remote account or an administrator may repair a grant."
            )
        _ensure_active(request, "can be repaired")
        findings = _drift_findings(request)
        if not permissions.has_remote_drift(request.drift):
            if not permissions.can_repair_datalake_drift(user, request):
                raise NotAllowed("You may not repair this grant.")
            _start_repair(request, user=user, findings=findings, source_ip=source_ip)
            return request

        pending = _pending_repair(request)
        if permissions.can_override_remote_drift(user, request):
            if pending is not None:
                pending.state = RepairRequest.State.APPROVED
                pending.decided_at = timezone.now()
                pending.save(update_fields=["state", "decided_at"])
                _audit_repair("decision.repair_approve", request, pending, user=user, source_ip=source_ip,
                              comment=justification, override=True)
                transaction.on_commit(lambda: notifications.notify_repair_decided(pending))
            _start_repair(request, user=user, findings=findings, source_ip=source_ip, repair=pending)
            return request
        if permissions.can_decide_remote_drift(user, request):
            # A Remote approver's repair is one approval: of the pending ask, or of a new one.
            repair = pending or _file_repair(request, user=user, findings=findings, justification=justification,
                                             source_ip=source_ip, notify=False)
            _approve(request, repair, user=user, comment=justification, source_ip=source_ip)
            if pending is None and repair.state == RepairRequest.State.PENDING:
                # The account needs more approvers than this one: tell the others.
                transaction.on_commit(lambda: notifications.notify_repair_requested(repair))
            return request
        if not permissions.can_ask_repair(user, request):
            raise NotAllowed(
                f"Drift in the Remote account {request.remote_account.account_id} is for its approvers to repair."
            )
        if pending is not None:
            raise InvalidTransition(f"Grant #{request.pk} already has a repair awaiting the Remote approvers.")
        _file_repair(request, user=user, findings=findings, justification=justification, source_ip=source_ip)
    return request


def _file_repair(request, *, user, findings, justification, source_ip, notify: bool = True) -> RepairRequest:
    # What drifted and where, in words; the documents themselves stay in the drift report.
    asked = [{key: finding.get(key) for key in ("kind", "resource", "message")} for finding in findings]
    repair = RepairRequest.objects.create(
        request=request, requested_by=user, findings=asked, justification=justification
    )
    _audit_repair("repair.requested", request, repair, user=user, source_ip=source_ip, justification=justification)
    if notify:
        transaction.on_commit(lambda: notifications.notify_repair_requested(repair))
    return repair


def _decidable_repair(*, request_id, user, verb: str) -> tuple[AccessRequest, RepairRequest]:
    request = lock_request_for(user=user, request_id=request_id)
    if request.requester_id == user.pk:
        raise NotAllowed(f"Nobody may {verb} the repair of their own grant.")
    if not permissions.can_decide_repair(user, request):
        raise NotAllowed(
            f"Only approvers of the Remote account {request.remote_account.account_id} may {verb} this repair."
        )
    repair = _pending_repair(request)
    if repair is None:
        raise InvalidTransition(f"Grant #{request.pk} has no repair awaiting a decision.")
    _ensure_active(request, "can be repaired")
    return request, repair


def access_request_repair_approve(
    *, request_id, user, plan_hash: str, comment: str = "", source_ip: str | None = None
) -> AccessRequest:
    """Record ``user``'s approval of the grant's pending repair request; the
    repair runs once the Remote account's required number of approvers agree.

    Like an approval, it names the plan the approver was shown (``plan_hash``):
    a repair puts back that plan's statements and nothing else."""
    comment = clean_comment(comment)
    with transaction.atomic():
        request, repair = _decidable_repair(request_id=request_id, user=user, verb="approve")
        ensure_plan_seen(request, plan_hash)
        _drift_findings(request)  # a grant that no longer drifted has nothing to repair
        _approve(request, repair, user=user, comment=comment, source_ip=source_ip)
    return request


def access_request_repair_reject(*, request_id, user, comment: str, source_ip: str | None = None) -> AccessRequest:
    """Refuse the grant's pending repair request, with a comment; the grant stays as it is."""
    comment = clean_comment(comment)
    with transaction.atomic():
        request, repair = _decidable_repair(request_id=request_id, user=user, verb="reject")
        if not comment:
            raise ValidationFailed({"comment": ["A comment is required to reject a repair."]})
        repair.state = RepairRequest.State.REJECTED
        repair.decided_at = timezone.now()
        repair.save(update_fields=["state", "decided_at"])
        _audit_repair("decision.repair_reject", request, repair, user=user, source_ip=source_ip, comment=comment)
        transaction.on_commit(lambda: notifications.notify_repair_decided(repair))
    return request


def close_outdated_repair(request: AccessRequest, report: dict) -> None:
    """Close the grant's pending repair request when none of the drift it was
    about is in the latest report (called inside the report's transaction)."""
    repair = _pending_repair(request)
    if repair is None:
        return
    asked = {(f.get("kind"), f.get("resource")) for f in repair.findings}
    found = {(f.get("kind"), f.get("resource")) for f in (report or {}).get("findings", [])}
    if asked & found:
        return
    repair.state = RepairRequest.State.CLOSED
    repair.decided_at = timezone.now()
    repair.save(update_fields=["state", "decided_at"])
    _audit_repair("repair.closed", request, repair, user=None, source_ip=None,
                  reason="the drift it was about is no longer found")
