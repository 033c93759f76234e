"""The one plan of a request set: what its approvers see and approve.

Every grant awaiting approval, with its own documents, and every statement
grouped under the secret and the key it goes into; its hash binds an
approval of the set (``services.request_sets.request_set_approve``). The
API, the pages and the CLI read it from here.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from provisioning.documents import plan_hash
from requests_app import permissions, visibility
from requests_app.models import AccessRequest, RequestSet, RequestState

# The states in which a grant awaits the approvers' decision.
AWAITING = (RequestState.PENDING_APPROVAL, RequestState.NEEDS_REAPPROVAL)


def set_plan(grants: Iterable[AccessRequest], *, shown=None) -> dict[str, Any]:
    """The plan of ``grants`` (those awaiting approval, oldest first): each
    grant's own documents, and every statement under the secret and the key it
    goes into. ``shown(grant, document)`` redacts a document for the person
    reading it; the hash is always of the plan as it is (``set_plan_hash``)."""
    show = shown or (lambda grant, document: document)
    rows: list[dict[str, Any]] = []
    secrets: dict[str, list] = {}
    keys: dict[str, list] = {}
    for grant in grants:
        plan = grant.plan or {}
        key = grant.resolved_kms_key_arn or grant.kms_key_arn
        rows.append(
            {
                "request": grant.pk,
                "endpoint_identifier": grant.endpoint_identifier,
                "engine": grant.engine,
                "endpoint_type": grant.endpoint_type,
                "secret_arn": grant.secret_arn,
                "kms_key_arn": show(grant, key),
                "role_name": grant.role_name,
                "plan_hash": grant.plan_hash,
                # Every document through ``show``, as a single request's plan is
                # (``visibility.plan_for``): whichever of them names the key.
                "role_trust_policy": show(grant, plan.get("role_trust_policy")),
                "role_inline_policy": show(grant, plan.get("role_inline_policy")),
                "endpoint_settings": show(grant, plan.get("endpoint_settings")),
            }
        )
        secrets.setdefault(grant.secret_arn, []).append(
            {"request": grant.pk, "statement": show(grant, plan.get("secret_policy_statement"))}
        )
        keys.setdefault(show(grant, key) or "", []).append(
            {"request": grant.pk, "statement": show(grant, plan.get("key_policy_statement"))}
        )
    return {
        "grants": rows,
        "secrets": [{"arn": arn, "statements": statements} for arn, statements in sorted(secrets.items())],
        "keys": [{"arn": arn, "statements": statements} for arn, statements in sorted(keys.items())],
    }


def set_plan_hash(grants: Sequence[AccessRequest]) -> str:
    """What approving the set binds to: the hash of the plan of ``grants``
    (each grant's whole plan, its id and its approval round). Empty when
    no grant awaits."""
    if not grants:
        return ""
    rounds = [{"request": grant.pk, "approval_round": grant.approval_round} for grant in grants]
    return plan_hash({"plan": set_plan(grants), "rounds": rounds})


def awaiting_grants(request_set: RequestSet) -> list[AccessRequest]:
    return list(
        request_set.grants.filter(state__in=AWAITING)
        .select_related("datalake_account", "remote_account")
        .order_by("pk")
    )


def set_plan_for(user, request_set: RequestSet, grants: Sequence[AccessRequest] | None = None) -> dict:
    """The plan of the grants awaiting approval (of every grant, when none
    awaits), each document as ``user`` may see it, with the hash to approve.

    ``grants``: every grant of the set, read with whether ``user`` approves
    for their accounts (``selectors.request_set_detail_for``); read here
    that way when not given, so the plan costs no query per grant."""
    if grants is None:
        rows = request_set.grants.select_related("datalake_account", "remote_account").order_by("pk")
        active = permissions.is_active_user(user)
        if active:
            rows = rows.annotate(**permissions.approver_annotations(user))
        grants = list(rows)
        for grant in grants if active else ():
            permissions.remember_approver_annotations(user, grant)
    awaiting = [grant for grant in grants if grant.state in AWAITING]
    plan = set_plan(awaiting or grants, shown=lambda grant, document: visibility.redact_key(user, grant, document))
    return {"plan_hash": set_plan_hash(awaiting), "awaiting": [grant.pk for grant in awaiting], **plan}
