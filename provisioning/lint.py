"""Linting a grant's policy documents with parliament, the offline IAM policy linter.

Every document of a plan is linted at plan time; the findings are part of the
preflight report the approvers see, and an error-level finding blocks
approval. Parliament knows every IAM action and the resource type each one
accepts, so it catches a misspelt action (``secretsmanager:GetSecretValu``,
which IAM accepts and which then grants nothing) and a resource of the wrong
type for an action (a secret ARN on ``kms:Decrypt``).

Parliament is written for identity policies. Two of its findings are noise for
the other kinds of document, and are avoided rather than filtered, so that
every other check still runs:

- A trust policy has no ``Resource`` (its resource is the role it is attached
  to); parliament reports ``MALFORMED`` and stops checking the statement. The
  trust policy is linted with the role ARN as its ``Resource``, which is what
  ``sts:AssumeRole`` is authorised against.
- In a key policy ``Resource: "*"`` means "this key"; parliament reports
  ``RESOURCE_STAR``. The key statement is linted with the key ARN in place of
  ``"*"``, so a non-KMS action in it is still a resource mismatch.

Parliament checks ``Principal`` itself (resource policies and trust policies),
so secret and key statements are linted as one-statement policies as they are.
Parliament's community auditors are not run: they look for privilege
escalation and permission-management actions, which a grant's documents never
contain, and their findings are outside parliament's severity configuration.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass

from provisioning.statements import statements_of

ERROR = "error"
WARNING = "warning"

# Parliament issues that mean AWS refuses the document, or the document does
# not grant what it says (an unknown action or a resource of the wrong type
# matches nothing): the grant cannot work as planned, so approval is blocked.
# Parliament itself rates some of these LOW (UNKNOWN_ACTION) because for a
# hand-written policy they are often harmless leftovers; in a generated plan
# they are a defect.
ERROR_ISSUES = frozenset(
    {
        "EXCEPTION",
        "MALFORMED_JSON",
        "MALFORMED",
        "DUPLICATE_SID",
        "INVALID_SID",
        "UNKNOWN_ACTION",
        "UNKNOWN_PREFIX",
        "RESOURCE_MISMATCH",
        "INVALID_ARN",
        "INVALID_VERSION",
        "UNKNOWN_PRINCIPAL",
        "UNKNOWN_FEDERATION_SOURCE",
        "UNKNOWN_OPERATOR",
        "MISMATCHED_TYPE_OPERATION_TO_NULL",
    }
)
# Any issue not listed above follows parliament's own rating.
_PARLIAMENT_ERROR_SEVERITIES = frozenset({"CRITICAL", "HIGH"})

IDENTITY = "identity"
TRUST = "trust"
RESOURCE = "resource"
KEY = "key"
DOCUMENT_KINDS = (IDENTITY, TRUST, RESOURCE, KEY)

# The documents of a plan (provisioning.documents.PLAN_KEYS) and how each is linted.
PLAN_DOCUMENTS = (
    ("role_trust_policy", TRUST),
    ("role_inline_policy", IDENTITY),
    ("secret_policy_statement", RESOURCE),
    ("key_policy_statement", KEY),
)


@dataclass(frozen=True)
class Finding:
    """One linter finding on one document of a plan."""

    document: str  # a plan key, e.g. "role_inline_policy"
    issue: str  # parliament's issue code, e.g. "UNKNOWN_ACTION"
    severity: str  # ERROR or WARNING
    title: str
    detail: str

    @property
    def blocks_approval(self) -> bool:
        """True for an error-level finding: the plan cannot be approved."""
        return self.severity == ERROR

    def to_dict(self) -> dict:
        """The finding as plain JSON-serialisable data, for the preflight report."""
        return asdict(self)


def severity_of(issue: str, parliament_severity: str) -> str:
    """Map a parliament issue and its own severity to ERROR or WARNING."""
    if issue in ERROR_ISSUES or parliament_severity in _PARLIAMENT_ERROR_SEVERITIES:
        return ERROR
    return WARNING


def _describe(detail: object, location: object) -> str:
    if isinstance(detail, list) and detail and all(isinstance(item, dict) for item in detail):
        # RESOURCE_MISMATCH: [{"action": ..., "required_format": ...}, ...]
        return "; ".join(
            f"{item.get('action')} needs a resource like {item.get('required_format')}" for item in detail
        )
    if isinstance(detail, list):
        return ", ".join(str(item) for item in detail)
    text = str(detail or "")
    where = location.get("string") if isinstance(location, dict) else None
    if where and str(where) not in text:
        text = f"{text} ({where})" if text else str(where)
    return text


def _as_linted(document: dict, *, kind: str, implicit_resource: str | None) -> dict:
    """The document parliament should see for ``kind`` (see the module docstring)."""
    if kind in (IDENTITY, RESOURCE):
        return document
    linted = copy.deepcopy(document)
    statements = statements_of(linted)
    for statement in statements:
        if not isinstance(statement, dict):
            continue
        if kind == TRUST and "Resource" not in statement and "NotResource" not in statement:
            statement["Resource"] = implicit_resource or "*"
        elif kind == KEY and statement.get("Resource") == "*" and implicit_resource:
            statement["Resource"] = implicit_resource
    if statements:
        linted["Statement"] = statements
    return linted


def lint_policy(document: dict, *, document_name: str, kind: str, implicit_resource: str | None = None) -> list[Finding]:
    """Lint one policy document with parliament and return its findings.

    ``kind`` is IDENTITY, TRUST (``implicit_resource`` = the role ARN),
    RESOURCE (a secret policy) or KEY (``implicit_resource`` = the key ARN).
    A statement to be merged into a shared policy is passed wrapped as a
    one-statement policy.
    """
    if kind not in DOCUMENT_KINDS:
        raise ValueError(f"unknown document kind {kind!r}; expected one of {', '.join(DOCUMENT_KINDS)}")
    # Imported here: loading parliament's IAM definitions takes about half a
    # second, which processes that never plan should not pay.
    from parliament import analyze_policy_string, enhance_finding

    linted = _as_linted(document, kind=kind, implicit_resource=implicit_resource)
    policy = analyze_policy_string(json.dumps(linted), ignore_private_auditors=True)
    findings = []
    for raw in policy.findings:
        enhanced = enhance_finding(raw)
        findings.append(
            Finding(
                document=document_name,
                issue=enhanced.issue,
                severity=severity_of(enhanced.issue, enhanced.severity),
                title=enhanced.title,
                detail=_describe(enhanced.detail, enhanced.location),
            )
        )
    return findings


def _as_policy(statement: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": [statement]}


def _principal_arn(statement: dict) -> str | None:
    principal = statement.get("Principal") if isinstance(statement, dict) else None
    value = principal.get("AWS") if isinstance(principal, dict) else None
    return value if isinstance(value, str) and ":role/" in value else None


def _role_arn(plan: dict) -> str | None:
    for key in ("secret_policy_statement", "key_policy_statement"):
        arn = _principal_arn(plan.get(key) or {})
        if arn:
            return arn
    return None


def _key_arn(plan: dict) -> str | None:
    for statement in statements_of(plan.get("role_inline_policy")):
        resources = statement.get("Resource") if isinstance(statement, dict) else None
        for resource in resources if isinstance(resources, list) else [resources]:
            if isinstance(resource, str) and resource.startswith("arn:") and ":kms:" in resource:
                return resource
    return None


def lint_plan(plan: dict) -> list[Finding]:
    """Lint every policy document of a plan (``provisioning.documents.build_plan``).

    The role trust policy and inline policy are linted as they are applied;
    the secret and key statements as one-statement policies. The endpoint
    settings are not a policy and are not linted. Findings come in plan order.
    """
    role_arn = _role_arn(plan)
    key_arn = _key_arn(plan)
    findings: list[Finding] = []
    for name, kind in PLAN_DOCUMENTS:
        document = plan.get(name)
        if document is None:
            continue
        if kind in (RESOURCE, KEY):
            document = _as_policy(document)
        implicit = role_arn if kind == TRUST else key_arn if kind == KEY else None
        findings.extend(lint_policy(document, document_name=name, kind=kind, implicit_resource=implicit))
    return findings


def blocking_findings(findings: list[Finding] | list[dict]) -> list:
    """The findings (objects or their ``to_dict()`` form) that block approval."""
    return [
        finding
        for finding in findings
        if (finding.get("severity") if isinstance(finding, dict) else finding.severity) == ERROR
    ]
