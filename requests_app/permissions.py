"""Who may do what to a request or an account.

Pure functions of the user and the objects: views and the API use them to
decide what to show, and every service calls them again under its row lock,
so no entry point can skip a rule. They only look at the objects' own
relations (approvers, requesters, decisions) and use those relations'
prefetched rows when a selector prefetched them.

The ``can_<action>`` functions answer "is this person entitled to do this to
this request"; whether the request's state still allows it is the services'
(and ``allowed_actions``') business.
"""
from __future__ import annotations

from collections.abc import Collection

from django.db.models import Exists, OuterRef, Q

from provisioning.drift import REMOTE, finding_account
from requests_app.membership import accounts_approved_by, accounts_requested_by
from requests_app.models import AccessRequest, ApiToken, AwsAccount, Decision, RequestState, api_token_in_use


def is_active_user(user) -> bool:
    """Signed in and not deactivated."""
    return bool(user is not None and user.is_authenticated and user.is_active)


ADMINISTER_PORTAL = "requests_app.administer_portal"


def is_portal_admin(user) -> bool:
    """A portal administrator: holds the ``administer_portal`` permission
    (directly, through a group such as "Portal administrators", or as a
    superuser). ``is_staff`` alone only opens the Django admin."""
    return is_active_user(user) and user.has_perm(ADMINISTER_PORTAL)


def _group_ids(user) -> frozenset[int]:
    # Read once per user object (a request's user, a service's actor): pages
    # that ask about many accounts make one query for the person's groups.
    cached = getattr(user, "_portal_group_ids", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("pk", flat=True))
        user._portal_group_ids = cached
    return cached


def _listed(user, account: AwsAccount, relation: str) -> bool:
    """Listed by name in ``relation`` (approvers, requesters) or a member of a
    group listed in ``<relation minus s>_groups``."""
    known = account.__dict__.get("_portal_listed", {}).get((relation, user.pk))
    if known is not None:
        return known
    groups = relation[:-1] + "_groups"
    prefetched = getattr(account, "_prefetched_objects_cache", {})
    if relation in prefetched and groups in prefetched:
        if any(member.pk == user.pk for member in prefetched[relation]):
            return True
        listed_groups = {group.pk for group in prefetched[groups]}
        return bool(listed_groups) and not listed_groups.isdisjoint(_group_ids(user))
    return (
        AwsAccount.objects.filter(pk=account.pk)
        .filter(Q(**{relation: user}) | Q(**{f"{groups}__user": user}))
        .exists()
    )


# The request's two accounts, as AccessRequest names them.
REQUEST_ACCOUNTS = ("remote_account", "datalake_account")


def approver_annotations(user) -> dict[str, Exists]:
    """Whether ``user`` approves for a request's Remote and DataLake accounts,
    as annotations of an AccessRequest query: read with the row, then handed
    to ``remember_approver_annotations`` so ``is_approver_for`` answers for
    those accounts without a query of its own."""
    return {
        f"_approves_for_{side}": Exists(
            AwsAccount.objects.filter(pk=OuterRef(f"{side}_id")).filter(Q(approvers=user) | Q(approver_groups__user=user))
        )
        for side in REQUEST_ACCOUNTS
    }


def decided_on_current_plan(user) -> Exists:
    """An annotation (or filter) of AccessRequest: ``user`` approved or rejected its current plan."""
    return Exists(Decision.objects.filter(
        request=OuterRef("pk"), approver=user, plan_hash=OuterRef("plan_hash"), approval_round=OuterRef("approval_round")
    ))


def remember_approver_annotations(user, request: AccessRequest) -> None:
    """Keep what ``approver_annotations`` read on the request's account objects."""
    for side in REQUEST_ACCOUNTS:
        listed = getattr(request, f"_approves_for_{side}")
        getattr(request, side).__dict__.setdefault("_portal_listed", {})[("approvers", user.pk)] = listed


def remember_standing(user, request: AccessRequest, *, approves_for: Collection[int], decided: bool) -> None:
    """Keep what a list already knows of ``user``'s standing on one of its rows
    (the ids of the accounts they approve for, whether they decided on the
    row's plan), so the actions offered on it cost no query."""
    for side in REQUEST_ACCOUNTS:
        account = getattr(request, side)
        account.__dict__.setdefault("_portal_listed", {})[("approvers", user.pk)] = account.pk in approves_for
    request.__dict__.setdefault("_portal_decided", {})[user.pk] = decided


def is_approver_for(user, account: AwsAccount) -> bool:
    """Listed as an approver of ``account``, or in a group listed as its approvers."""
    return is_active_user(user) and _listed(user, account, "approvers")


def is_requester_for(user, account: AwsAccount) -> bool:
    """Listed as a requester of ``account``, or in a group listed as its requesters."""
    return is_active_user(user) and _listed(user, account, "requesters")


def _is_own(user, request: AccessRequest) -> bool:
    return is_active_user(user) and request.requester_id == user.pk


def can_view(user, request: AccessRequest) -> bool:
    """The requester, the approvers of either account, and portal administrators see a request."""
    if not is_active_user(user):
        return False
    # The administrator's permission last: it is the one that costs queries.
    return (
        _is_own(user, request)
        or is_approver_for(user, request.remote_account)
        or is_approver_for(user, request.datalake_account)
        or is_portal_admin(user)
    )


def can_file_for(user, account: AwsAccount) -> bool:
    """Only the requesters a DataLake account lists file for it (administrators must be listed too)."""
    return account.is_datalake and is_requester_for(user, account)


def can_file(user) -> bool:
    """Whoever some DataLake account lists as requester may file (and check a form) at all."""
    return is_active_user(user) and accounts_requested_by(user).filter(is_datalake=True).exists()


def approves_for_any(user) -> bool:
    """Listed as approver of some Remote account (by name or group): has an approval queue at all."""
    return is_active_user(user) and accounts_approved_by(user).filter(is_remote=True).exists()


def can_approve(user, request: AccessRequest) -> bool:
    """An approver of the request's Remote account, and never its own requester."""
    return not _is_own(user, request) and is_approver_for(user, request.remote_account)


def can_reject(user, request: AccessRequest) -> bool:
    """Same people as approval: a requester withdraws by cancelling, not rejecting."""
    return can_approve(user, request)


def can_cancel(user, request: AccessRequest) -> bool:
    return _is_own(user, request)


def can_revoke(user, request: AccessRequest) -> bool:
    return _is_own(user, request) or is_approver_for(user, request.remote_account) or is_portal_admin(user)


def can_retry(user, request: AccessRequest) -> bool:
    return _is_own(user, request) or is_portal_admin(user)


def can_refresh_preflight(user, request: AccessRequest) -> bool:
    return _is_own(user, request) or is_approver_for(user, request.remote_account)


def can_extend(user, request: AccessRequest) -> bool:
    """Only the requester asks for a later expiry; the approvers decide it."""
    return _is_own(user, request)


def can_decide_extension(user, request: AccessRequest) -> bool:
    """An extension is a new decision by the same people as the approval."""
    return can_approve(user, request)


def can_repair(user, request: AccessRequest) -> bool:
    """Who may act on a drifted grant's repair at all: the requester, the
    Remote account's approvers and administrators (who does what depends on
    where it drifted, see below)."""
    return can_revoke(user, request)


def can_repair_datalake_drift(user, request: AccessRequest) -> bool:
    """Drift confined to the DataLake account (the role, the endpoint) is the
    requester's side: anyone who may repair puts it back directly."""
    return can_repair(user, request)


def can_decide_remote_drift(user, request: AccessRequest) -> bool:
    """A portal statement removed from a Remote policy is the Remote account's
    decision: only its approvers (never the grant's own requester) or an
    administrator choose to put it back."""
    return not _is_own(user, request) and (is_approver_for(user, request.remote_account) or is_portal_admin(user))


def can_override_remote_drift(user, request: AccessRequest) -> bool:
    """An administrator repairs Remote drift at once; the approvers' choice
    needs as many of them as an approval does."""
    return not _is_own(user, request) and is_portal_admin(user)


def can_ask_repair(user, request: AccessRequest) -> bool:
    """The requester asks the Remote account's approvers for a repair of drift in their account."""
    return _is_own(user, request)


def can_decide_repair(user, request: AccessRequest) -> bool:
    """A repair request is decided like an extension: by the approvers, never the requester."""
    return can_approve(user, request)


def can_export(user, request: AccessRequest) -> bool:
    """Whoever sees a request may download its change."""
    return can_view(user, request)


def can_see_remote_documents(user, request: AccessRequest) -> bool:
    """The Remote account's documents as AWS holds them: the live secret and key
    policies, the before/after diff of a grant, the Remote steps' recorded
    documents and what preflight read there (the secret's key and its state,
    the secret's JSON key names, policy sizes). For the Remote account's
    approvers and administrators; a requester sees preflight outcomes and the
    plan, never another account's documents."""
    return is_portal_admin(user) or is_approver_for(user, request.remote_account)


# States a request reaches only after its approvers approved it.
_APPROVED_STATES = frozenset(
    {RequestState.APPROVED, RequestState.PROVISIONING, RequestState.ACTIVE, RequestState.FAILED,
     RequestState.REVOKING, RequestState.REVOKED}
)


def can_see_resolved_key(user, request: AccessRequest) -> bool:
    """The KMS key ARN preflight resolved from the secret: whoever sees the Remote
    documents; other viewers once the request was approved (the DataLake role
    then names the key anyway), or when it is exactly the key they named."""
    if can_see_remote_documents(user, request):
        return True
    if not can_view(user, request):
        return False
    resolved = request.resolved_kms_key_arn
    return request.state in _APPROVED_STATES or not resolved or resolved == request.kms_key_arn


def can_register_account(user) -> bool:
    return is_portal_admin(user)


def can_change_account_members(user) -> bool:
    """Approvers, requesters and the number of approvals are set by portal administrators."""
    return is_portal_admin(user)


def can_link_sso_identity(actor, user) -> bool:
    """Pre-linking decides whom a provider identity signs in as: administrators
    only, and only a superuser for a staff user or a superuser."""
    if not is_portal_admin(actor):
        return False
    return actor.is_superuser or not (user.is_staff or user.is_superuser or is_portal_admin(user))


def can_link_slack_identity(actor, user) -> bool:
    """A Slack link decides whom a Slack user approves as: the same people as
    a single sign-on pre-link."""
    return can_link_sso_identity(actor, user)


def can_create_api_token(user) -> bool:
    """Anyone signed in makes tokens for themselves only, and only when signed in
    as a person: a token cannot mint a token (a stolen one would outlive its own
    expiry and revocation that way)."""
    return is_active_user(user) and api_token_in_use(user) is None


def can_see_api_token(user, token: ApiToken) -> bool:
    """A token is its owner's business (administrators list them in the admin)."""
    return is_active_user(user) and (token.user_id == user.pk or is_portal_admin(user))


def can_revoke_api_token(user, token: ApiToken) -> bool:
    """Its owner, or an administrator (say, for a leaked token)."""
    return can_see_api_token(user, token)


def can_unlock_logins(user) -> bool:
    """Lifting a login lockout before it cools off is an administrator's decision."""
    return is_portal_admin(user)


def has_decided_on_current_plan(user, request: AccessRequest) -> bool:
    known = request.__dict__.get("_portal_decided", {}).get(user.pk)
    if known is not None:
        return known
    decisions = getattr(request, "_prefetched_objects_cache", {}).get("decisions")
    if decisions is not None:
        return any(
            d.approver_id == user.pk and d.plan_hash == request.plan_hash and d.approval_round == request.approval_round
            for d in decisions
        )
    return Decision.objects.filter(
        request=request, approver_id=user.pk, plan_hash=request.plan_hash, approval_round=request.approval_round
    ).exists()


def allowed_actions(user, request: AccessRequest) -> set[str]:
    """The actions to offer ``user`` on ``request`` now (entitled AND the state allows it),
    as the table of actions (``requests_app.actions``) declares them."""
    from requests_app.actions import offered_actions  # the table names the services, which import this module

    return offered_actions(user, request, lifecycle=False)


def has_remote_drift(drift: dict | None) -> bool:
    """Whether a drift report has a finding in the Remote account (its owners decide).

    A report that says drifted without saying where counts as Remote.
    """
    drift = drift or {}
    findings = drift.get("findings") or []
    if drift.get("drifted") and not findings:
        return True
    return any(finding_account(finding.get("kind", ""), finding.get("resource", "")) == REMOTE for finding in findings)


def repair_offer(user, request: AccessRequest, pending_repair) -> str | None:
    """What POST .../repair/ does for ``user`` now: ``repair`` (it runs, or
    counts as this approver's approval), ``ask_repair`` (it files a repair
    request), or None."""
    drift = request.drift or {}
    if not drift.get("drifted") or not can_repair(user, request):
        return None
    if not has_remote_drift(drift):
        return "repair" if can_repair_datalake_drift(user, request) else None
    if can_override_remote_drift(user, request):
        return "repair"
    if can_decide_remote_drift(user, request):
        # An approver with a repair request pending decides that one instead.
        return "repair" if pending_repair is None else None
    if can_ask_repair(user, request) and pending_repair is None:
        return "ask_repair"
    return None


def lifecycle_actions(user, request: AccessRequest, *, pending_extension=None, pending_repair=None) -> set[str]:
    """The actions on an active grant to offer ``user`` now (``extend``,
    ``decide_extension``, ``repair``, ``ask_repair``, ``decide_repair``,
    ``export``), from the same table.

    ``pending_extension`` and ``pending_repair`` are the request's pending
    ExpiryExtension and RepairRequest, if any (the caller has them
    prefetched). Kept apart from ``allowed_actions``, whose set the pages and
    the API map one-to-one onto their buttons.
    """
    from requests_app.actions import offered_actions

    return offered_actions(
        user, request, lifecycle=True, pending_extension=pending_extension, pending_repair=pending_repair
    )


# --- approval rules (services.rules) ------------------------------------------------------------


def can_view_rules(user, account: AwsAccount) -> bool:
    """A Remote account's rules (what they approve names its secrets): its
    approvers and administrators."""
    return is_portal_admin(user) or is_approver_for(user, account)


def can_propose_rule(user, account: AwsAccount) -> bool:
    """Only the approvers of a Remote account propose its rules and their changes
    (administrators register accounts; they do not decide for them)."""
    return account.is_remote and is_approver_for(user, account)


def can_approve_rule_version(user, version) -> bool:
    """Another approver of the rule's account: the proposer's own approval never counts."""
    return version.proposed_by_id != getattr(user, "pk", None) and is_approver_for(user, version.rule.remote_account)


def can_reject_rule_version(user, version) -> bool:
    """Any approver of the rule's account (the proposer rejecting is a withdrawal)."""
    return is_approver_for(user, version.rule.remote_account)
