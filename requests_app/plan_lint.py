"""The linter's findings on a request's plan, as part of its preflight report.

The approvers see the findings with the preflight checks; an error-level
finding fails preflight with the diagnosis ``policy_lint_error``, and a
request whose preflight failed cannot be approved (the approval service and
``permissions.allowed_actions`` both refuse it).
"""
from __future__ import annotations

from provisioning.lint import blocking_findings, lint_plan
from requests_app.models import AccessRequest

LINT_CHECK = "policy_lint"
LINT_DIAGNOSIS = "policy_lint_error"


def _check(findings: list[dict]) -> dict:
    errors = blocking_findings(findings)
    if errors:
        message = "; ".join(f"{f['document']}: {f['issue']} {f['detail']}".strip() for f in errors)
    elif findings:
        message = f"{len(findings)} warning(s), none blocks approval"
    else:
        message = "every policy document passes the IAM policy linter"
    # The shape of provisioning.preflight.Check.to_dict(), so the pages and
    # the API list it with the other checks.
    return {"name": LINT_CHECK, "ok": not errors, "message": message, "diagnosis": LINT_DIAGNOSIS if errors else None}


def lint_into_preflight(request: AccessRequest) -> None:
    """Lint ``request.plan`` and fold the findings into ``request.preflight`` (not saved).

    Adds ``preflight["lint"]`` (the findings) and a ``policy_lint`` check.
    An error-level finding fails a preflight that had passed, with the
    diagnosis ``policy_lint_error``; a preflight that failed already keeps
    its own diagnosis. Without a plan there is nothing to lint.
    """
    if not request.plan:
        return
    findings = [finding.to_dict() for finding in lint_plan(request.plan)]
    report = dict(request.preflight or {})
    report["lint"] = findings
    report["checks"] = [c for c in report.get("checks") or [] if c.get("name") != LINT_CHECK] + [_check(findings)]
    if blocking_findings(findings) and request.preflight_status == AccessRequest.PreflightStatus.PASSED:
        report["ok"] = False
        report["diagnosis"] = LINT_DIAGNOSIS
        request.preflight_status = AccessRequest.PreflightStatus.FAILED
        request.diagnosis = LINT_DIAGNOSIS
    request.preflight = report
