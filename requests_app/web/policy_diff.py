"""Before/after of the two Remote-account policies a grant edits.

"Before" is what the grant step recorded just before its write, once it has
run; until then it is the live document, read from AWS through the engine
when AWS answers. "After" is "before" with the portal's statement merged by
the engine's own merge function, so the page shows exactly what the worker
writes (or wrote).
"""
from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, field

from provisioning.errors import ProvisioningError
from provisioning.steps import table
from provisioning.statements import merge_statement
from requests_app.models import AccessRequest, ProvisioningStep
from requests_app.web.live_policies import read_live_policies

logger = logging.getLogger(__name__)

CONTEXT_LINES = 8

# (kind, grant step, plan key, title)
POLICIES = (
    (table.SECRET, table.for_resource(table.GRANT, table.SECRET).name, "secret_policy_statement", "Secret resource policy"),
    (table.KEY, table.for_resource(table.GRANT, table.KEY).name, "key_policy_statement", "KMS key policy"),
)


@dataclass
class DiffLine:
    kind: str  # file, hunk, add, del, ctx
    text: str


@dataclass
class PolicyDiff:
    kind: str
    title: str
    arn: str
    source: str
    lines: list[DiffLine] = field(default_factory=list)
    unavailable: str = ""


# The order people read policies in. The database's JSON type stores keys
# shortest first, which puts "Sid" after "Action"; put them back.
KEY_ORDER = (
    "Version", "Id", "Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
    "Resource", "NotResource", "Condition", "Statement",
)  # fmt: skip
_RANK = {key: rank for rank, key in enumerate(KEY_ORDER)}


def _ordered(value):
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: (_RANK.get(key, len(_RANK)), key))
        return {key: _ordered(value[key]) for key in keys}
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    return value


def policy_json(document) -> str:
    """A policy document as indented JSON with its keys in reading order."""
    return json.dumps(_ordered(document), indent=2, ensure_ascii=False)


def pretty(document) -> list[str]:
    """Stable, readable JSON lines of a policy document (nothing for no policy)."""
    if document is None:
        return []
    return policy_json(document).splitlines()


def unified_lines(before, after, *, name: str) -> list[DiffLine]:
    """A unified diff of two documents, each line tagged for highlighting."""
    lines = []
    diff = difflib.unified_diff(
        pretty(before),
        pretty(after),
        fromfile=f"{name} (before)" if before is not None else f"{name} (no policy yet)",
        tofile=f"{name} (after)",
        lineterm="",
        n=CONTEXT_LINES,
    )
    for text in diff:
        if text.startswith(("---", "+++")):
            kind = "file"
        elif text.startswith("@@"):
            kind = "hunk"
        elif text.startswith("+"):
            kind = "add"
        elif text.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append(DiffLine(kind, text))
    return lines


def _unrecorded(steps: dict) -> set[str]:
    return {
        kind for kind, step_name, _, _ in POLICIES
        if steps.get(step_name) is None or steps[step_name].status != ProvisioningStep.Status.SUCCEEDED
    }


def policy_diffs_for(access_request: AccessRequest) -> list[PolicyDiff]:
    """The secret-policy and key-policy diffs of ``access_request``'s grant."""
    plan = access_request.plan or {}
    steps = {
        step.name: step for step in access_request.steps.all() if step.phase == ProvisioningStep.Phase.GRANT
    }
    arns = {"secret": access_request.secret_arn, "key": access_request.resolved_kms_key_arn or access_request.kms_key_arn}
    live: dict | None = None
    live_error = ""
    diffs = []
    for kind, step_name, plan_key, title in POLICIES:
        statement = plan.get(plan_key)
        diff = PolicyDiff(kind=kind, title=title, arn=arns[kind], source="")
        diffs.append(diff)
        if not statement:
            diff.unavailable = "The plan has no statement for this policy (preflight did not resolve the key)."
            continue
        step = steps.get(step_name)
        if step is not None and step.status == ProvisioningStep.Status.SUCCEEDED:
            before = step.before
            when = f" at {step.finished_at:%Y-%m-%d %H:%M:%S} UTC" if step.finished_at else ""
            diff.source = f"Before: as the {step_name} step read it right before writing{when}."
        else:
            if live is None and not live_error:
                try:
                    live = read_live_policies(access_request, kinds=_unrecorded(steps))
                except ProvisioningError as error:
                    live_error = f"AWS could not be read: {error}"
                    logger.info("live policy read failed for request %s: %s", access_request.pk, error)
            if live_error:
                diff.unavailable = live_error
                diff.lines = unified_lines(None, merge_statement(None, statement), name=title)
                continue
            before = live[kind]
            diff.source = "Before: the live document, read from AWS just now."
        diff.lines = unified_lines(before, merge_statement(before, statement), name=title)
    return diffs
