"""Reads for the pages and the API, each in a fixed number of queries.

Visibility follows ``permissions.can_view``: portal administrators see everything; others
see their own requests and those of accounts they approve for. The filters
here are the query form of that rule, so a list never shows a request its
detail page would refuse.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from requests_app import membership, permissions
from requests_app.errors import NotFoundForUser
from requests_app.models import (
    AccessRequest,
    ApprovalRule,
    ApprovalRuleVersion,
    AuditChainState,
    AuditEvent,
    AwsAccount,
    Decision,
    ExpiryExtension,
    ProvisioningStep,
    RepairRequest,
    RequestSet,
    RequestState,
    RuleDecision,
)


def _approver_accounts(user) -> list[int]:
    """The ids of the accounts ``user`` approves for, read once: as a list of
    ids rather than a subquery, the list queries that use them take Postgres
    a fraction of the time to plan."""
    return list(membership.accounts_approved_by(user).values_list("pk", flat=True))


def requests_visible_to(*, user) -> QuerySet[AccessRequest]:
    """Every request ``user`` may see, newest first, with its people and accounts joined."""
    return _requests_visible(user, _approver_accounts)


def _requests_visible(user, approver_accounts: Callable[[Any], list[int]]) -> QuerySet[AccessRequest]:
    requests = AccessRequest.objects.select_related("requester", "datalake_account", "remote_account")
    if not permissions.is_active_user(user):
        return requests.none()
    if not permissions.is_portal_admin(user):
        accounts = approver_accounts(user)
        requests = requests.filter(
            Q(requester=user) | Q(remote_account__in=accounts) | Q(datalake_account__in=accounts)
        )
    return requests.order_by("-created_at", "-id")


def current_approvals() -> Coalesce:
    """An annotation of AccessRequest: the distinct approvals of its current plan."""
    approvals = (
        Decision.objects.filter(
            request=OuterRef("pk"),
            outcome=Decision.Outcome.APPROVE,
            plan_hash=OuterRef("plan_hash"),
            approval_round=OuterRef("approval_round"),
        )
        # Counted as the approval service counts: only people approving for the account now.
        .filter(membership.approver_q("approver__", OuterRef("remote_account")))
        .order_by()
        .values("request")
        .annotate(n=Count("approver", distinct=True))
        .values("n")
    )
    return Coalesce(Subquery(approvals, output_field=IntegerField()), Value(0))


def plan_approvals(request: AccessRequest) -> int:
    """The approvals of the request's current plan counted towards its Remote
    account's quorum: people's (``people_approvals``) and a rule's
    (``rule_approvals``). The worker applies a plan only when this reaches
    ``required_approvals``."""
    return people_approvals(request) + rule_approvals(request)


def rule_approvals(request: AccessRequest) -> int:
    """What an approval rule's decision on the request's current plan (and
    approval round) counts for: the whole quorum when the rule decided alone,
    one approval when it counted beside people, nothing without one."""
    decision = (
        RuleDecision.objects.filter(request=request, plan_hash=request.plan_hash, approval_round=request.approval_round)
        .only("whole_decision")
        .first()
    )
    return rule_approval_count(request, None if decision is None else decision.whole_decision)


def current_rule_decision() -> Subquery:
    """An annotation of AccessRequest: ``whole_decision`` of a rule's decision
    on its current plan, or None without one (for ``rule_approval_count``)."""
    decision = RuleDecision.objects.filter(
        request=OuterRef("pk"), plan_hash=OuterRef("plan_hash"), approval_round=OuterRef("approval_round")
    ).values("whole_decision")[:1]
    return Subquery(decision)


def rule_approval_count(request: AccessRequest, whole_decision: bool | None) -> int:
    if whole_decision is None or not request.plan_hash:
        return 0
    return request.remote_account.required_approvals if whole_decision else 1


def people_approvals(request: AccessRequest) -> int:
    """Distinct approvals of the request's current plan by people approving for its Remote account now."""
    return (
        Decision.objects.filter(
            request=request,
            outcome=Decision.Outcome.APPROVE,
            plan_hash=request.plan_hash,
            approval_round=request.approval_round,
            approver__in=membership.approvers_of(request.remote_account_id),
        )
        .exclude(approver_id=request.requester_id)
        .order_by()
        .values("approver_id")
        .distinct()
        .count()
    )


def approver_account_ids(*, user) -> list[int]:
    """The ids of the accounts ``user`` approves for (directly or through a group)."""
    return _approver_accounts(user) if permissions.is_active_user(user) else []


def approval_queue_for(*, user, approver_accounts: list[int] | None = None) -> QuerySet[AccessRequest]:
    """Requests awaiting ``user``'s decision, oldest first.

    Pending requests of the Remote accounts ``user`` approves for, except
    their own and those whose current plan they already decided on. Each row
    carries ``current_approvals`` (distinct approvals of its current plan).
    ``approver_accounts``: ``approver_account_ids`` when the caller read them already.
    """
    if approver_accounts is not None:
        return _approval_queue(user, lambda _: approver_accounts)
    return _approval_queue(user, _approver_accounts)


def _approval_queue(user, approver_accounts: Callable[[Any], list[int]]) -> QuerySet[AccessRequest]:
    if not permissions.is_active_user(user):
        return AccessRequest.objects.none()
    return (
        AccessRequest.objects.select_related("requester", "datalake_account", "remote_account")
        .filter(
            state__in=(RequestState.PENDING_APPROVAL, RequestState.NEEDS_REAPPROVAL),
            remote_account__in=approver_accounts(user),
        )
        .exclude(requester=user)
        .exclude(permissions.decided_on_current_plan(user))
        .annotate(current_approvals=current_approvals())
        .order_by("created_at", "id")
    )


def request_detail_for(*, user, request_id: Any) -> AccessRequest:
    """One request with its decisions, steps, audit events, pending extension and repair (raises
    NotFoundForUser when it does not exist or ``user`` may not see it).

    Whether ``user`` approves for its two accounts is read with the row, so
    ``permissions`` answers about this request without further queries.
    """
    if not permissions.is_active_user(user):
        raise NotFoundForUser()
    try:
        request = (
            AccessRequest.objects.select_related("requester", "datalake_account", "remote_account")
            .annotate(**permissions.approver_annotations(user))
            .prefetch_related(
                Prefetch("decisions", queryset=Decision.objects.select_related("approver").order_by("created_at", "id")),
                Prefetch("steps", queryset=ProvisioningStep.objects.order_by("phase", "position")),
                Prefetch("audit_events", queryset=AuditEvent.objects.select_related("account").order_by("id")),
                Prefetch(
                    "extensions",
                    queryset=ExpiryExtension.objects.filter(state=ExpiryExtension.State.PENDING)
                    .select_related("requested_by")
                    .prefetch_related("approved_by"),
                    to_attr="pending_extensions",
                ),
                Prefetch(
                    "repairs",
                    queryset=RepairRequest.objects.filter(state=RepairRequest.State.PENDING)
                    .select_related("requested_by")
                    .prefetch_related("approved_by"),
                    to_attr="pending_repairs",
                ),
            )
            .get(pk=request_id)
        )
    except (AccessRequest.DoesNotExist, ValueError, TypeError):
        raise NotFoundForUser() from None
    permissions.remember_approver_annotations(user, request)
    if not permissions.can_view(user, request):
        raise NotFoundForUser()
    return request


def request_sets_visible_to(*, user) -> QuerySet[RequestSet]:
    """Every multi-grant request ``user`` may see (one of its grants, at least), newest first."""
    visible = _requests_visible(user, _approver_accounts).filter(request_set__isnull=False).order_by()
    return (
        RequestSet.objects.filter(pk__in=visible.values("request_set"))
        .select_related("requester", "datalake_account", "remote_account")
        .order_by("-created_at", "-id")
    )


def request_set_detail_for(*, user, set_id: Any) -> tuple[RequestSet, list[AccessRequest]]:
    """One multi-grant request and the grants ``user`` may see of it, oldest
    first (raises NotFoundForUser when it does not exist or they see none)."""
    try:
        request_set = RequestSet.objects.select_related("requester", "datalake_account", "remote_account").get(
            pk=int(set_id)
        )
    except (RequestSet.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFoundForUser() from None
    grants = list(
        _requests_visible(user, _approver_accounts)
        .filter(request_set=request_set)
        .annotate(**permissions.approver_annotations(user))
        .order_by("pk")
    )
    if not grants:
        raise NotFoundForUser()
    for grant in grants:
        permissions.remember_approver_annotations(user, grant)
    return request_set, grants


def pending_extension_of(request: AccessRequest) -> ExpiryExtension | None:
    """The request's extension awaiting the approvers, if any (prefetched by
    ``request_detail_for``; read from the database otherwise)."""
    pending = getattr(request, "pending_extensions", None)
    if pending is None:
        pending = list(
            request.extensions.filter(state=ExpiryExtension.State.PENDING).prefetch_related("approved_by")
        )
    return pending[0] if pending else None


def pending_repair_of(request: AccessRequest) -> RepairRequest | None:
    """The request's repair request awaiting the Remote approvers, if any
    (prefetched by ``request_detail_for``; read from the database otherwise)."""
    pending = getattr(request, "pending_repairs", None)
    if pending is None:
        pending = list(
            request.repairs.filter(state=RepairRequest.State.PENDING)
            .select_related("requested_by")
            .prefetch_related("approved_by")
        )
    return pending[0] if pending else None


def audit_events_visible_to(
    *,
    user,
    request_id: Any = None,
    account_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Audit events ``user`` may see, newest first, optionally filtered.

    Portal administrators see all. Others see the events of the requests they may see, and
    the account events (registration) of accounts they approve or file for.
    ``account_id`` is the 12-digit AWS account id; ``actor`` the actor label.
    """
    events = AuditEvent.objects.select_related("account")
    if not permissions.is_active_user(user):
        return events.none()
    if not permissions.is_portal_admin(user):
        visible_requests = requests_visible_to(user=user).order_by().values("pk")
        own_accounts = AwsAccount.objects.filter(
            Q(pk__in=membership.accounts_approved_by(user).values("pk"))
            | Q(pk__in=membership.accounts_requested_by(user).values("pk"))
        ).values("pk")
        events = events.filter(
            Q(request__in=visible_requests) | Q(request__isnull=True, account__in=own_accounts)
        )
    if request_id not in (None, ""):
        events = events.filter(request_id=request_id)
    if account_id:
        events = events.filter(account__account_id=account_id)
    if actor:
        events = events.filter(actor_label=actor)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lte=until)
    return events.order_by("-id")


def audit_chain_status() -> AuditChainState | None:
    """How the last verification of the audit chain went (None before the first)."""
    return AuditChainState.objects.order_by("id").first()


def dashboard_counts_for(*, user) -> dict[str, Any]:
    """Counts for the dashboard, in three queries (one of them the user's approver accounts).

    ``visible``: requests ``user`` may see, per state; ``mine``: their own
    requests, per state; ``awaiting_my_approval``: the length of their queue.
    """
    aggregates: dict[str, Any] = {}
    for state in RequestState.values:
        aggregates[f"visible__{state}"] = Count("id", filter=Q(state=state))
        aggregates[f"mine__{state}"] = Count("id", filter=Q(state=state, requester_id=getattr(user, "pk", None)))
    accounts = functools.cache(_approver_accounts)  # read once for both counts
    counts = _requests_visible(user, accounts).order_by().aggregate(**aggregates)
    return {
        "visible": {state: counts[f"visible__{state}"] or 0 for state in RequestState.values},
        "mine": {state: counts[f"mine__{state}"] or 0 for state in RequestState.values},
        "awaiting_my_approval": _approval_queue(user, accounts).count(),
    }


def oldest_pending_by_account(*, user) -> list[AccessRequest]:
    """For each Remote account ``user`` approves for, its oldest request still
    waiting for approval (one query after the user's accounts; Postgres'
    DISTINCT ON), oldest first."""
    if not permissions.is_active_user(user):
        return []
    oldest = (
        AccessRequest.objects.select_related("requester", "remote_account")
        .filter(state=RequestState.PENDING_APPROVAL, remote_account__in=_approver_accounts(user))
        .order_by("remote_account_id", "created_at", "id")
        .distinct("remote_account_id")
    )
    return sorted(oldest, key=lambda request: (request.created_at, request.pk))


# --- approval rules ----------------------------------------------------------------------------------


def _rule_versions() -> Prefetch:
    return Prefetch(
        "versions",
        queryset=ApprovalRuleVersion.objects.select_related("proposed_by", "rejected_by")
        .prefetch_related("datalake_accounts", "approved_by")
        .order_by("-number"),
    )


def rules_visible_to(*, user, account_id: str | None = None) -> QuerySet[ApprovalRule]:
    """The approval rules ``user`` may see (those of the Remote accounts they
    approve for; administrators: all), with their versions, in four queries
    after the user's accounts. ``account_id``: one account's (12 digits)."""
    rules = ApprovalRule.objects.select_related("remote_account").prefetch_related(_rule_versions())
    if not permissions.is_active_user(user):
        return rules.none()
    if not permissions.is_portal_admin(user):
        rules = rules.filter(remote_account__in=_approver_accounts(user))
    if account_id:
        rules = rules.filter(remote_account__account_id=account_id)
    return rules.order_by("remote_account__name", "name", "id")


def rule_detail_for(*, user, rule_id: Any) -> ApprovalRule:
    """One rule with its versions (NotFoundForUser when there is none or ``user`` may not see it)."""
    try:
        rule = (
            ApprovalRule.objects.select_related("remote_account")
            .prefetch_related(_rule_versions(), "remote_account__approvers", "remote_account__approver_groups")
            .get(pk=rule_id)
        )
    except (ApprovalRule.DoesNotExist, ValueError, TypeError):
        raise NotFoundForUser() from None
    if not permissions.can_view_rules(user, rule.remote_account):
        raise NotFoundForUser()
    return rule


def rule_versions_of(rule: ApprovalRule) -> tuple[ApprovalRuleVersion | None, ApprovalRuleVersion | None]:
    """The rule's version in force and its proposed one (from the prefetched versions)."""
    versions = list(rule.versions.all())
    in_force = next((v for v in versions if v.state == ApprovalRuleVersion.State.IN_FORCE), None)
    proposed = next((v for v in versions if v.state == ApprovalRuleVersion.State.PROPOSED), None)
    return in_force, proposed


def rule_decisions_of(request: AccessRequest) -> list[RuleDecision]:
    """The rules' approvals of the request, oldest first, naming rule and version (one query)."""
    return list(
        RuleDecision.objects.filter(request=request).select_related("rule_version__rule").order_by("created_at", "id")
    )
