"""What of a request's AWS reads each viewer is shown.

The portal reads the Remote account with its provisioner role on behalf of
whoever files a request. Those reads are the Remote account's business: the
live secret and key policies, what the Remote steps read and wrote, the
secret's key and its state, the secret's JSON key names. The rules are in
``permissions`` (``can_see_remote_documents``, ``can_see_resolved_key``);
this module applies them to the stored rows, for the pages, the API and the
exports alike. A viewer without the right sees preflight outcomes (each
check passed or failed, with its remediation) and the plan, with the key
ARN they did not name replaced by ``KEY_PLACEHOLDER`` until the request is
approved.
"""
from __future__ import annotations

from typing import Any

from provisioning.diagnoses import get_diagnosis
from provisioning.steps import table
from requests_app import permissions
from requests_app.membership import accounts_approved_by
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep

# Plain enough to stand in a JSON document, a YAML template and a shell command alike.
KEY_PLACEHOLDER = "the-secrets-kms-key-shown-once-approved"

# Steps whose recorded documents are the Remote account's policies (verify
# records the live secret and key policies it evaluated).
REMOTE_DOCUMENT_STEPS = frozenset(step.name for step in table.STEPS if step.remote_documents)

# Checks about the requester's own side (the request's fields, the DataLake
# account's names): their messages say nothing about the Remote account.
OWN_SIDE_CHECKS = frozenset({"request_valid", "provisioner_roles", "role_name_available", "endpoint_identifier_available"})

# What a passed Remote-side check tells someone who may not see what it read.
PASSED_OUTCOMES = {
    "secret_exists": "The secret exists in the Remote account.",
    "customer_managed_key": "The secret is encrypted with a customer-managed KMS key.",
    "key_usable": "The secret's KMS key is enabled and symmetric.",
    "key_matches": "The named key is the secret's key.",
    "policy_sizes": "The secret and key policies stay within AWS limits with the portal's statements.",
    "secret_shape": "The secret's JSON has the keys DMS reads.",
    "policy_lint": "The plan's documents pass the IAM policy linter.",
}


def _remediation(code: str | None) -> str:
    diagnosis = get_diagnosis(code or None)
    return diagnosis.remediation if diagnosis is not None else ""


def _outcome(check: dict) -> dict:
    """One check as its outcome only: passed or failed, and what to do about it."""
    name = check.get("name", "")
    code = check.get("diagnosis")
    if name in OWN_SIDE_CHECKS:
        message = check.get("message", "")
    elif check.get("ok"):
        message = PASSED_OUTCOMES.get(name, "Passed.")
    else:
        diagnosis = get_diagnosis(code or None)
        message = diagnosis.title if diagnosis is not None else "This check failed."
    return {"name": name, "ok": bool(check.get("ok")), "message": message, "diagnosis": code,
            "remediation": _remediation(code)}


def preflight_report_for(user, request: AccessRequest, report: dict | None) -> dict | None:
    """``report`` (a stored preflight report of ``request``) as ``user`` may see it."""
    if not report:
        return None
    if permissions.can_see_remote_documents(user, request):
        checks = [{**check, "remediation": _remediation(check.get("diagnosis"))} for check in report.get("checks") or []]
        return {**report, "checks": checks}
    key = report.get("kms_key_arn")
    return {
        "ok": report.get("ok"),
        "diagnosis": report.get("diagnosis"),
        "kms_key_arn": key if key and permissions.can_see_resolved_key(user, request) else None,
        "secret_keys": None,
        "checks": [_outcome(check) for check in report.get("checks") or []],
    }


def preflight_for(user, request: AccessRequest) -> dict | None:
    """The request's preflight report as ``user`` may see it (None before it ran)."""
    return preflight_report_for(user, request, request.preflight)


def _hidden_key_strings(user, request: AccessRequest) -> tuple[str, ...]:
    resolved = request.resolved_kms_key_arn
    if not resolved or permissions.can_see_resolved_key(user, request):
        return ()
    key_id = resolved.rsplit("/", 1)[-1]
    return (resolved, key_id) if key_id and key_id != resolved else (resolved,)


def _replace(value: Any, hidden: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for text in hidden:
            value = value.replace(text, KEY_PLACEHOLDER)
        return value
    if isinstance(value, dict):
        return {_replace(key, hidden): _replace(item, hidden) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, hidden) for item in value]
    return value


def redact_key(user, request: AccessRequest, value: Any) -> Any:
    """``value`` (a document, or text) with the resolved key ARN replaced when ``user``
    may not see it yet."""
    hidden = _hidden_key_strings(user, request)
    return _replace(value, hidden) if hidden else value


def plan_for(user, request: AccessRequest) -> dict:
    """The plan's documents as ``user`` may see them."""
    return redact_key(user, request, request.plan or {})


def kms_key_arn_for(user, request: AccessRequest) -> str:
    """The key to show next to the request: the resolved one when ``user`` may see it,
    else the one the requester named (or nothing)."""
    if request.resolved_kms_key_arn and permissions.can_see_resolved_key(user, request):
        return request.resolved_kms_key_arn
    return request.kms_key_arn


def step_documents_for(user, request: AccessRequest, step: ProvisioningStep) -> tuple[Any, Any, str]:
    """``(before, after, error)`` of ``step`` as ``user`` may see them."""
    if step.name == table.PREFLIGHT:
        after = preflight_report_for(user, request, step.after) if isinstance(step.after, dict) else step.after
        error = step.error
        if error and not permissions.can_see_remote_documents(user, request):
            error = "; ".join(c["message"] for c in (after or {}).get("checks", []) if not c["ok"]) or "preflight failed"
        return step.before, after, error
    if step.name in REMOTE_DOCUMENT_STEPS and not permissions.can_see_remote_documents(user, request):
        return None, None, redact_key(user, request, step.error)
    return step.before, step.after, step.error


def _is_remote_resource(resource: str) -> bool:
    return ":secretsmanager:" in resource or ":kms:" in resource


def _findings_without_remote_documents(findings: list) -> list:
    return [
        {key: value for key, value in finding.items() if key != "actual"}
        if _is_remote_resource(str(finding.get("resource", ""))) else finding
        for finding in findings
    ]


def drift_for(user, request: AccessRequest) -> dict | None:
    """The last drift report as ``user`` may see it: what a Remote policy now holds
    in place of the portal's statement (``actual``) stays with the Remote
    account's approvers and administrators."""
    drift = request.drift or None
    if drift is None or permissions.can_see_remote_documents(user, request):
        return drift
    return {**drift, "findings": _findings_without_remote_documents(drift.get("findings") or [])}


def audit_details_for(user, event: AuditEvent, *, remote_account_ids: frozenset[int] | None) -> dict:
    """An audit event's details as ``user`` may see them: the documents a Remote
    step read and wrote stay with that account's approvers and administrators.

    ``remote_account_ids`` are the accounts whose documents ``user`` may see
    (None: all of them, for an administrator); see ``document_accounts_of``.
    """
    details = event.details or {}
    if remote_account_ids is None or event.account_id in remote_account_ids:
        return details
    if event.action == "grant.drift_detected":
        return {**details, "findings": _findings_without_remote_documents(details.get("findings") or [])}
    if details.get("step") not in REMOTE_DOCUMENT_STEPS | {table.PREFLIGHT}:
        return details
    return {key: value for key, value in details.items() if key not in ("before", "after", "kms_key_arn")}


def document_accounts_of(user) -> frozenset[int] | None:
    """The ids of the accounts whose documents ``user`` may see in the audit trail
    (None: every account)."""
    if permissions.is_portal_admin(user):
        return None
    if not permissions.is_active_user(user):
        return frozenset()
    return frozenset(accounts_approved_by(user).values_list("pk", flat=True))
