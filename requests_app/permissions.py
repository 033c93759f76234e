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

from requests_app.models import ALLOWED_TRANSITIONS, AccessRequest, AwsAccount, Decision, RequestState

ACTIONS = ("approve", "reject", "cancel", "revoke", "retry")


def is_active_user(user) -> bool:
    """Signed in and not deactivated."""
    return bool(user is not None and user.is_authenticated and user.is_active)


def is_staff_user(user) -> bool:
    """An administrator: staff or superuser, signed in and active."""
    return is_active_user(user) and (user.is_staff or user.is_superuser)


def _listed(user, account: AwsAccount, relation: str) -> bool:
    manager = getattr(account, relation)
    prefetched = getattr(account, "_prefetched_objects_cache", {})
    if relation in prefetched:
        return any(member.pk == user.pk for member in prefetched[relation])
    return manager.filter(pk=user.pk).exists()


def is_approver_for(user, account: AwsAccount) -> bool:
    return is_active_user(user) and _listed(user, account, "approvers")


def is_requester_for(user, account: AwsAccount) -> bool:
    return is_active_user(user) and _listed(user, account, "requesters")


def _is_own(user, request: AccessRequest) -> bool:
    return is_active_user(user) and request.requester_id == user.pk


def can_view(user, request: AccessRequest) -> bool:
    """The requester, the approvers of either account, and staff see a request."""
    if not is_active_user(user):
        return False
    return (
        is_staff_user(user)
        or _is_own(user, request)
        or is_approver_for(user, request.remote_account)
        or is_approver_for(user, request.datalake_account)
    )


def can_file_for(user, account: AwsAccount) -> bool:
    """Only the requesters a DataLake account lists file for it (staff must be listed too)."""
    return account.is_datalake and is_requester_for(user, account)


def can_approve(user, request: AccessRequest) -> bool:
    """An approver of the request's Remote account, and never its own requester."""
    return not _is_own(user, request) and is_approver_for(user, request.remote_account)


def can_reject(user, request: AccessRequest) -> bool:
    """Same people as approval: a requester withdraws by cancelling, not rejecting."""
    return can_approve(user, request)


def can_cancel(user, request: AccessRequest) -> bool:
    return _is_own(user, request)


def can_revoke(user, request: AccessRequest) -> bool:
    return _is_own(user, request) or is_approver_for(user, request.remote_account) or is_staff_user(user)


def can_retry(user, request: AccessRequest) -> bool:
    return _is_own(user, request) or is_staff_user(user)


def can_refresh_preflight(user, request: AccessRequest) -> bool:
    return _is_own(user, request) or is_approver_for(user, request.remote_account)


def can_extend(user, request: AccessRequest) -> bool:
    """Only the requester asks for a later expiry; the approvers decide it."""
    return _is_own(user, request)


def can_decide_extension(user, request: AccessRequest) -> bool:
    """An extension is a new decision by the same people as the approval."""
    return can_approve(user, request)


def can_repair(user, request: AccessRequest) -> bool:
    """Putting a drifted grant back is open to whoever may revoke it."""
    return can_revoke(user, request)


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
    return is_staff_user(user) or is_approver_for(user, request.remote_account)


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
    return is_staff_user(user)


def can_unlock_logins(user) -> bool:
    """Lifting a login lockout before it cools off is an administrator's decision."""
    return is_staff_user(user)


def has_decided_on_current_plan(user, request: AccessRequest) -> bool:
    decisions = getattr(request, "_prefetched_objects_cache", {}).get("decisions")
    if decisions is not None:
        return any(d.approver_id == user.pk and d.plan_hash == request.plan_hash for d in decisions)
    return Decision.objects.filter(request=request, approver_id=user.pk, plan_hash=request.plan_hash).exists()


def allowed_actions(user, request: AccessRequest) -> set[str]:
    """The actions to offer ``user`` on ``request`` now (entitled AND the state allows it)."""
    if not can_view(user, request):
        return set()
    moves = ALLOWED_TRANSITIONS[request.state]
    actions: set[str] = set()
    if request.state == RequestState.PENDING_APPROVAL:
        if can_approve(user, request) and not has_decided_on_current_plan(user, request):
            actions.add("reject")
            if request.preflight_status == AccessRequest.PreflightStatus.PASSED:
                actions.add("approve")
        if can_cancel(user, request):
            actions.add("cancel")
    if RequestState.REVOKING in moves and can_revoke(user, request):
        actions.add("revoke")
    if request.state == RequestState.FAILED and can_retry(user, request):
        actions.add("retry")
    return actions


LIFECYCLE_ACTIONS = ("extend", "decide_extension", "repair", "export")


def lifecycle_actions(user, request: AccessRequest, *, pending_extension=None) -> set[str]:
    """The actions on an active grant to offer ``user`` now: a subset of ``LIFECYCLE_ACTIONS``.

    ``pending_extension`` is the request's pending ExpiryExtension, if any
    (the caller has it prefetched). Kept apart from ``allowed_actions``,
    whose set the pages and the API map one-to-one onto their buttons.
    """
    if not can_view(user, request):
        return set()
    actions = {"export"}
    if request.state != RequestState.ACTIVE:
        return actions
    if pending_extension is None and request.expires_at is not None and can_extend(user, request):
        actions.add("extend")
    if pending_extension is not None and can_decide_extension(user, request) and not any(
        approver.pk == user.pk for approver in pending_extension.approved_by.all()
    ):
        actions.add("decide_extension")
    if (request.drift or {}).get("drifted") and can_repair(user, request):
        actions.add("repair")
    return actions
