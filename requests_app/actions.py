"""Every action a person takes on a request, declared once.

The pages (``web.views.request_action``), the API (one view per route, in
``api/views.py`` and ``api/lifecycle_views.py``) and
``permissions.allowed_actions`` / ``permissions.lifecycle_actions`` all read
``ACTIONS``: the one service an action calls, who may try it, when it is
offered, the body it takes, and what to tell the person once it is done. A
rule changed here holds on both interfaces.

Who may try an action is checked before anything else: before the body is
read, before a registry lookup, before any AWS call (``check``). The
service checks it again under its row lock, so no entry point can skip it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from requests_app import permissions, services
from requests_app.errors import NotAllowed, NotFoundForUser
from provisioning.names import ENGINES
from requests_app.models import (
    ALLOWED_TRANSITIONS,
    AccessRequest,
    ApprovalRule,
    AwsAccount,
    ExpiryExtension,
    RepairRequest,
    RequestSet,
    RequestState,
)
from requests_app.services.expiry import JUSTIFICATION_MAX
from requests_app.services.request_sets import AWAITING
from requests_app.services.repair import JUSTIFICATION_MAX as REPAIR_JUSTIFICATION_MAX
from requests_app.services.rules import MAX_EXPIRY_DAYS_LIMIT, RULE_NAME_MAX, SECRET_NAME_PREFIX_MAX
from requests_app.validation import COMMENT_MAX, COMMENT_TOO_LONG

PLAN_HASH_LENGTH = 64  # SHA-256, hexadecimal


# --- bodies: the same parser (and so the same limits and words) for the pages and the API ---


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=COMMENT_MAX,
        error_messages={"max_length": COMMENT_TOO_LONG},
        help_text=f"Optional, at most {COMMENT_MAX} characters.",
    )


class ApproveSerializer(CommentSerializer):
    plan_hash = serializers.CharField(
        max_length=PLAN_HASH_LENGTH,
        allow_blank=True,
        help_text="The `plan_hash` of the plan you were shown (from the request or its `/plan/`). "
        "If the plan has changed since, nothing is decided: 409 with `current_plan_hash`.",
    )


COMMENT_REQUIRED = "A comment is required to reject."


class RejectSerializer(serializers.Serializer):
    # Required and not blank, as the schema says (the services check again).
    comment = serializers.CharField(
        max_length=COMMENT_MAX,
        error_messages={"required": COMMENT_REQUIRED, "blank": COMMENT_REQUIRED, "max_length": COMMENT_TOO_LONG},
        help_text=f"Why (required), at most {COMMENT_MAX} characters.",
    )


class ExtendSerializer(serializers.Serializer):
    expires_at = serializers.DateTimeField(help_text="The new expiry: later than the current one, in the future.")
    justification = serializers.CharField(
        max_length=JUSTIFICATION_MAX, required=False, default="", allow_blank=True, help_text="Why the grant is needed longer."
    )


class RepairSerializer(serializers.Serializer):
    justification = serializers.CharField(
        max_length=REPAIR_JUSTIFICATION_MAX, required=False, default="", allow_blank=True,
        help_text="Why the statements should be put back (kept with a repair request to the Remote approvers).",
    )


# --- when an action is offered (the person being entitled is checked apart) ----------------


@dataclass(frozen=True)
class Pending:
    """What an active grant has waiting for a decision (prefetched by the caller)."""

    extension: ExpiryExtension | None = None
    repair: RepairRequest | None = None


def _deciding_now(user, request: AccessRequest, pending: Pending) -> bool:
    return request.state == RequestState.PENDING_APPROVAL and not permissions.has_decided_on_current_plan(user, request)


def _approvable_now(user, request: AccessRequest, pending: Pending) -> bool:
    if request.request_set_id is not None:
        return False  # approved with its set, whose plan covers every grant (SET_ACTIONS)
    if request.state == RequestState.NEEDS_REAPPROVAL:
        # The worker found another plan before its first write: the approvers
        # approve the new one (quorum again) or revoke; there is no reject.
        return not permissions.has_decided_on_current_plan(user, request)
    return _deciding_now(user, request, pending) and request.preflight_status == AccessRequest.PreflightStatus.PASSED


def _pending(user, request: AccessRequest, pending: Pending) -> bool:
    return request.state == RequestState.PENDING_APPROVAL


def _revocable(user, request: AccessRequest, pending: Pending) -> bool:
    return RequestState.REVOKING in ALLOWED_TRANSITIONS[request.state]


def _failed(user, request: AccessRequest, pending: Pending) -> bool:
    return request.state == RequestState.FAILED


def _extendable(user, request: AccessRequest, pending: Pending) -> bool:
    return request.state == RequestState.ACTIVE and pending.extension is None and request.expires_at is not None


def _extension_undecided_by(user, request: AccessRequest, pending: Pending) -> bool:
    return (
        request.state == RequestState.ACTIVE
        and pending.extension is not None
        and not any(approver.pk == user.pk for approver in pending.extension.approved_by.all())
    )


def _repair_offered(user, request: AccessRequest, pending: Pending) -> str | None:
    # One route, offered under two names: ``repair`` (it runs, or counts as an
    # approver's approval) or ``ask_repair`` (the requester files a repair request).
    if request.state != RequestState.ACTIVE:
        return None
    return permissions.repair_offer(user, request, pending.repair)


def _repair_undecided_by(user, request: AccessRequest, pending: Pending) -> bool:
    return (
        request.state == RequestState.ACTIVE
        and pending.repair is not None
        and not any(approver.pk == user.pk for approver in pending.repair.approved_by.all())
    )


@dataclass(frozen=True)
class RequestAction:
    name: str  # the path segment, on the pages (`.../<name>/`) and in `allowed_actions`
    service: Callable[..., AccessRequest]
    may: Callable[[Any, AccessRequest], bool]  # is this person entitled to it (permissions.can_*)
    # Does the request allow it now: True/False, or the name to offer it under (None: not offered).
    offered_when: Callable[[Any, AccessRequest, Pending], bool | str | None]
    refusal: str  # what a person who sees the request but may not do this is told; {request} is the request
    done: str  # what the pages say once done
    body: type[serializers.Serializer] | None = None  # its fields are the service's keyword arguments
    # Lifecycle actions are offered in ``lifecycle_actions`` under ``offered_as``;
    # the others in ``allowed_actions``.
    lifecycle: bool = False
    offered_as: str = ""
    in_api: bool = True  # False: a page-only action (it has no API route)
    # It makes the portal call AWS: drawn from the stricter per-user budget (PORTAL_AWS_RATE).
    calls_aws: bool = False
    verb_phrase: str = ""  # "Could not <verb> request #N": the name's words unless given

    @property
    def verb(self) -> str:
        return self.verb_phrase or self.name.replace("_", " ")

    def check(self, *, user, request_id: Any) -> AccessRequest:
        """The request, if ``user`` may try this action on it: NotFoundForUser when
        they may not see it, NotAllowed when they see it but may not do this.

        Interfaces call it before they read the body; it reads no AWS and no
        other row than the request and its accounts.
        """
        try:
            request = AccessRequest.objects.select_related("remote_account", "datalake_account").get(pk=request_id)
        except (AccessRequest.DoesNotExist, ValueError, TypeError):
            raise NotFoundForUser() from None
        if not permissions.can_view(user, request):
            raise NotFoundForUser()
        if not self.may(user, request):
            raise NotAllowed(self.refusal.format(request=request))
        return request


_DECIDERS = "Only approvers of the Remote account {request.remote_account.account_id}, never the requester, may "

# fmt: off
ACTIONS: dict[str, RequestAction] = {
    action.name: action
    for action in (
        RequestAction("approve", services.access_request_approve, permissions.can_approve, _approvable_now,
                      refusal=_DECIDERS + "approve this request.", done="Approved.", body=ApproveSerializer),
        RequestAction("reject", services.access_request_reject, permissions.can_reject, _deciding_now,
                      refusal=_DECIDERS + "reject this request.", done="Rejected.", body=RejectSerializer),
        RequestAction("cancel", services.access_request_cancel, permissions.can_cancel, _pending,
                      refusal="Only the requester may cancel a request.", done="Cancelled."),
        RequestAction("revoke", services.access_request_revoke, permissions.can_revoke, _revocable,
                      refusal="Only the requester, approvers of the Remote account or an administrator may revoke a grant.",
                      done="Revoke started."),
        RequestAction("retry", services.access_request_retry, permissions.can_retry, _failed,
                      refusal="Only the requester or an administrator may retry a request.", done="Retry started.",
                      calls_aws=True),
        RequestAction("refresh_preflight", services.access_request_refresh_preflight, permissions.can_refresh_preflight,
                      _pending, refusal="Only the requester or an approver of the Remote account may re-run preflight.",
                      done="Preflight ran again.", in_api=False, calls_aws=True),
        RequestAction("repair", services.access_request_repair, permissions.can_repair, _repair_offered,
                      refusal="Only the requester, approvers of the Remote account or an administrator may repair a grant.",
                      done="Repair started (or, for the Remote account, asked of its approvers).", body=RepairSerializer,
                      lifecycle=True, offered_as="repair", calls_aws=True),
        RequestAction("repair_approve", services.access_request_repair_approve, permissions.can_decide_repair,
                      _repair_undecided_by, refusal=_DECIDERS + "approve this repair.",
                      done="Repair approved.", body=ApproveSerializer, lifecycle=True, offered_as="decide_repair",
                      verb_phrase="approve the repair of"),
        RequestAction("repair_reject", services.access_request_repair_reject, permissions.can_decide_repair,
                      _repair_undecided_by, refusal=_DECIDERS + "reject this repair.",
                      done="Repair rejected.", body=RejectSerializer, lifecycle=True, offered_as="decide_repair",
                      verb_phrase="reject the repair of"),
        RequestAction("extend", services.access_request_extend, permissions.can_extend, _extendable,
                      refusal="Only the requester may ask for a later expiry.",
                      done="The extension now waits for the approvers.", body=ExtendSerializer,
                      lifecycle=True, offered_as="extend", verb_phrase="ask for a later expiry of"),
        RequestAction("extension_approve", services.access_request_extension_approve, permissions.can_decide_extension,
                      _extension_undecided_by, refusal=_DECIDERS + "approve this extension.",
                      done="Extension approved.", body=ApproveSerializer, lifecycle=True, offered_as="decide_extension",
                      verb_phrase="approve the extension of"),
        RequestAction("extension_reject", services.access_request_extension_reject, permissions.can_decide_extension,
                      _extension_undecided_by, refusal=_DECIDERS + "reject this extension.",
                      done="Extension rejected.", body=RejectSerializer, lifecycle=True, offered_as="decide_extension",
                      verb_phrase="reject the extension of"),
    )
}
# fmt: on

# Downloading the change is a read, offered to whoever sees the request.
EXPORT = "export"

API_ACTION_NAMES = tuple(name for name, action in ACTIONS.items() if action.in_api and not action.lifecycle)
# ``repair`` is also offered as ``ask_repair`` (see ``_repair_offered``).
LIFECYCLE_ACTION_NAMES = tuple(
    sorted({action.offered_as for action in ACTIONS.values() if action.lifecycle} | {EXPORT, "ask_repair"})
)


def offered_actions(
    user, request: AccessRequest, *, lifecycle: bool, pending_extension=None, pending_repair=None, pages: bool = False
) -> set[str]:
    """The names of the actions to offer ``user`` on ``request`` now: entitled
    (``may``) and allowed by the request as it is (``offered_when``)."""
    if not permissions.can_view(user, request):
        return set()
    pending = Pending(extension=pending_extension, repair=pending_repair)
    names = {EXPORT} if lifecycle else set()
    for action in ACTIONS.values():
        if action.lifecycle != lifecycle or not (action.in_api or pages):
            continue
        # What the request's state allows first: it is read from the row (and
        # what the caller prefetched or annotated), where being entitled may
        # cost a query (an administrator's permission).
        offered = action.offered_when(user, request, pending)
        if not offered or not action.may(user, request):
            continue
        if isinstance(offered, str):
            names.add(offered)
        elif offered:
            names.add(action.offered_as or action.name)
    return names


def action_arguments(action: RequestAction, data) -> dict[str, Any]:
    """The service's keyword arguments from a body (raises the serializer's ValidationError)."""
    if action.body is None:
        return {}
    parsed = action.body(data=data)
    parsed.is_valid(raise_exception=True)
    return dict(parsed.validated_data)


# --- multi-grant requests: approve, reject or revoke every grant at once ----------------------------------
#
# Tried on a set (``services.request_sets``): whoever sees none of its grants
# gets 404, whoever sees them but may do this to none of them 403; each grant
# is then checked again, under its lock, by the service that acts on it.


@dataclass(frozen=True)
class SetAction:
    name: str  # the path segment on the pages and in the API (`/request-sets/<id>/<name>/`)
    service: Callable[..., Any]
    may: Callable[[Any, AccessRequest], bool]  # may this person do it to this grant
    offered_when: Callable[[Any, AccessRequest, Pending], bool | str | None]  # does this grant allow it now
    refusal: str  # {request_set} is the set
    done: str
    body: type[serializers.Serializer] | None = None
    # Offered only when every grant that awaits approval allows it (the
    # service decides for all of them or none), not when any grant does.
    whole: bool = False

    def check(self, *, user, set_id: Any) -> RequestSet:
        try:
            request_set = RequestSet.objects.select_related("remote_account").get(pk=set_id)
        except (RequestSet.DoesNotExist, ValueError, TypeError, OverflowError):
            raise NotFoundForUser() from None
        grants = list(request_set.grants.select_related("remote_account", "datalake_account"))
        visible = [grant for grant in grants if permissions.can_view(user, grant)]
        if not visible:
            raise NotFoundForUser()
        if not any(self.may(user, grant) for grant in visible):
            raise NotAllowed(self.refusal.format(request_set=request_set))
        return request_set

    def offered(self, user, grants: list[AccessRequest]) -> bool:
        def allows(grant: AccessRequest) -> bool:
            return bool(self.offered_when(user, grant, Pending())) and self.may(user, grant)

        if self.whole:
            awaiting = [grant for grant in grants if grant.state in AWAITING]
            return bool(awaiting) and all(allows(grant) for grant in awaiting)
        return any(allows(grant) for grant in grants)


def _set_approvable_now(user, request: AccessRequest, pending: Pending) -> bool:
    if request.state == RequestState.NEEDS_REAPPROVAL:
        return not permissions.has_decided_on_current_plan(user, request)
    return _deciding_now(user, request, pending) and request.preflight_status == AccessRequest.PreflightStatus.PASSED


_SET_DECIDERS = "Only approvers of the Remote account {request_set.remote_account.account_id}, never the requester, may "

# fmt: off
SET_ACTIONS: dict[str, SetAction] = {
    action.name: action
    for action in (
        SetAction("approve", services.request_set_approve, permissions.can_approve, _set_approvable_now,
                  refusal=_SET_DECIDERS + "approve this request.", done="Approved: every grant awaiting approval.",
                  body=ApproveSerializer, whole=True),
        SetAction("reject", services.request_set_reject, permissions.can_reject, _deciding_now,
                  refusal=_SET_DECIDERS + "reject this request.", done="Rejected: every grant awaiting a decision.",
                  body=RejectSerializer),
        SetAction("revoke", services.request_set_revoke, permissions.can_revoke, _revocable,
                  refusal="Only the requester, approvers of the Remote account or an administrator may revoke these grants.",
                  done="Revoke started for every active or failed grant."),
    )
}
# fmt: on


def offered_set_actions(user, grants: list[AccessRequest]) -> set[str]:
    """The set actions to offer ``user``, given the grants of the set they see."""
    return {name for name, action in SET_ACTIONS.items() if action.offered(user, grants)}


def set_action_arguments(action: SetAction, data) -> dict[str, Any]:
    """The service's keyword arguments from a body (raises the serializer's ValidationError)."""
    if action.body is None:
        return {}
    parsed = action.body(data=data)
    parsed.is_valid(raise_exception=True)
    return dict(parsed.validated_data)


# --- approval rules: the same declaration for a Remote account's rules ----------------------------------
#
# A rule's actions (``services.rules``) are tried on a rule, not a request:
# whoever may not see the account's rules gets 404, an administrator who sees
# them but decides nothing for the account gets 403; the services check again
# under the rule's row lock.


class RuleCriteriaSerializer(serializers.Serializer):
    datalake_accounts = serializers.ListField(
        child=serializers.RegexField(r"^[0-9]{12}$", max_length=12),
        allow_empty=False,
        max_length=100,
        help_text="The registered DataLake accounts (12-digit ids) whose requests the rule approves.",
    )
    engines = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(ENGINES)),
        allow_empty=False,
        max_length=len(ENGINES),
        help_text="The DMS engines the rule approves.",
    )
    secret_name_prefix = serializers.RegexField(
        r"^[A-Za-z0-9/_+=.@-]+$",
        max_length=SECRET_NAME_PREFIX_MAX,
        help_text="The rule approves only secrets of its Remote account whose name starts with this.",
    )
    max_expiry_days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_EXPIRY_DAYS_LIMIT,
        help_text="The rule approves only requests that expire within this many days of its decision.",
    )
    comment = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=COMMENT_MAX,
        error_messages={"max_length": COMMENT_TOO_LONG}, help_text="Why (optional); the approvers see it.",
    )


class RuleProposeSerializer(RuleCriteriaSerializer):
    account_id = serializers.RegexField(
        r"^[0-9]{12}$", max_length=12, help_text="The Remote account (12 digits) the rule decides for."
    )
    name = serializers.CharField(max_length=RULE_NAME_MAX, help_text="Unique among the account's rules.")


class RuleVersionApproveSerializer(CommentSerializer):
    version = serializers.IntegerField(
        min_value=1,
        help_text="The number of the proposed version you were shown; if another is proposed now, nothing is "
        "decided (409).",
    )


class RuleVersionRejectSerializer(RejectSerializer):
    version = serializers.IntegerField(min_value=1, help_text="The number of the proposed version you were shown.")


@dataclass(frozen=True)
class RuleAction:
    name: str  # the path segment on the pages and in the API (`/rules/<id>/<name>/`)
    service: Callable[..., Any]
    refusal: str  # what someone who sees the rule but may not do this is told; {rule} is the rule
    done: str
    body: type[serializers.Serializer]

    def check(self, *, user, rule_id: Any) -> ApprovalRule:
        """The rule, if ``user`` may try this action on it: NotFoundForUser when
        they may not see the account's rules, NotAllowed when they may not decide for it."""
        try:
            rule = ApprovalRule.objects.select_related("remote_account").get(pk=rule_id)
        except (ApprovalRule.DoesNotExist, ValueError, TypeError):
            raise NotFoundForUser() from None
        if not permissions.can_view_rules(user, rule.remote_account):
            raise NotFoundForUser()
        if not permissions.can_propose_rule(user, rule.remote_account):
            raise NotAllowed(self.refusal.format(rule=rule))
        return rule


_RULE_DECIDERS = "Only approvers of the Remote account {rule.remote_account.account_id} may "

# fmt: off
RULE_ACTIONS: dict[str, RuleAction] = {
    action.name: action
    for action in (
        RuleAction("change", services.rule_change_propose, _RULE_DECIDERS + "propose a change of its rules.",
                   done="Change proposed: it takes effect once the other approvers approve it.",
                   body=RuleCriteriaSerializer),
        RuleAction("disable", services.rule_disable_propose, _RULE_DECIDERS + "propose to disable its rules.",
                   done="Disabling proposed: it takes effect once the other approvers approve it.",
                   body=CommentSerializer),
        RuleAction("approve", services.rule_version_approve, _RULE_DECIDERS + "approve changes of its rules.",
                   done="Approved.", body=RuleVersionApproveSerializer),
        RuleAction("reject", services.rule_version_reject, _RULE_DECIDERS + "reject changes of its rules.",
                   done="Rejected.", body=RuleVersionRejectSerializer),
    )
}
# fmt: on
RULE_PROPOSE_REFUSAL = "Only approvers of a Remote account propose its rules: name one you approve for (account_id)."


def check_rule_proposal(*, user, data) -> AwsAccount:
    """The Remote account a new rule is proposed for, if ``user`` approves for
    it; NotAllowed otherwise. Read before the rest of the body: the account is
    what the proposal is about, as a request's id is for its actions (the
    registry is public, so a refusal reveals nothing)."""
    account_id = data.get("account_id") if hasattr(data, "get") else None
    account = None
    if isinstance(account_id, str):
        account = AwsAccount.objects.filter(account_id=account_id, is_remote=True).first()
    if account is None or not permissions.can_propose_rule(user, account):
        raise NotAllowed(RULE_PROPOSE_REFUSAL)
    return account


def offered_rule_actions(user, rule: ApprovalRule, *, in_force, proposed) -> set[str]:
    """The rule actions to offer ``user`` now, given the rule's version in force and its proposed one."""
    if not permissions.can_propose_rule(user, rule.remote_account):
        return set()
    if proposed is None:
        return {"change", "disable"} if in_force is not None and in_force.enabled else {"change"}
    offered = {"reject"}
    if proposed.proposed_by_id != user.pk and not any(person.pk == user.pk for person in proposed.approved_by.all()):
        offered.add("approve")
    return offered


def rule_action_arguments(action: RuleAction, data) -> dict[str, Any]:
    """The service's keyword arguments from a body (raises the serializer's ValidationError)."""
    parsed = action.body(data=data)
    parsed.is_valid(raise_exception=True)
    return dict(parsed.validated_data)
