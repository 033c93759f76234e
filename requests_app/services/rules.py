"""Approval rules: a Remote account's approvers decide once which routine
requests need no person.

A rule names its account and, in each version, what it approves: requests
for these DataLake accounts, with these engines, for secrets whose name
starts with this prefix, expiring within N days, whose preflight passed.

Changing a rule is decided like a request
------------------------------------------
An approver of the account proposes a new rule, a change, or its disabling:
each is a new *version*, ``proposed``. It comes into force (and the version
it replaces is ``superseded``) once ``required_approvals`` other approvers of
the account approved that exact version number; the proposer's approval never
counts, and an approver removed from the account before the count stops
counting. One rejection ends the proposal. A rule has at most one proposed
version and one version in force; every step is audited (``rule.*``).

When a rule approves
--------------------
Rules are matched when a request waits for approval with its preflight
passed: right after it is filed, after its preflight is re-run, when a rule
version comes into force (every request already waiting in the account is
matched then: the approvers adopting a rule decided those requests too), and
by the periodic sweep (``requests.tend_pending``), which also picks up the
requests the worker handed back as ``needs_reapproval``.

Matching takes the request's row lock, then the account's rules' row locks
(the order the rule services never invert), checks everything again on the
locked rows, and records the decision, its audit event and the request's
move in one transaction; the grant is scheduled after the commit.

A rule never approves a request
- whose requester may not file for its DataLake account now;
- whose requester proposed or approved the version in force (their own
  approval of the rule would approve their own request);
- whose preflight did not pass, or that has no plan.

What a rule's approval counts for is the account's
``rules_count_alongside_people``: off (the default), the rule's approval is
the whole decision (the account's quorum spoke when it approved the rule);
on, it counts as one approval towards ``required_approvals`` and people give
the rest. Either way it is bound to the plan hash it saw: the worker's
apply-time check (``selectors.plan_approvals``) counts it only for that plan
in that approval round. A request decided by a version keeps it, whatever
later versions say.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from provisioning.names import ENGINES
from requests_app import membership, notifications, permissions
from requests_app.workflow import scheduling
from requests_app.audit import record_event
from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser, ValidationFailed
from requests_app.models import AccessRequest, ApprovalRule, ApprovalRuleVersion, AwsAccount, RequestState, RuleDecision
from requests_app.selectors import people_approvals
from requests_app.services.transitions import lock_request, move
from requests_app.slack import messages as slack_messages
from requests_app.validation import clean_comment

RULE_NAME_MAX = 100
SECRET_NAME_PREFIX_MAX = 256
MAX_EXPIRY_DAYS_LIMIT = 365
# The characters of a Secrets Manager secret name.
_SECRET_NAME = re.compile(r"\A[A-Za-z0-9/_+=.@-]+\Z")
_RULE_NAME = re.compile(r"\A[^\x00-\x1f\x7f]+\Z")
# The states in which a request waits for approvers, and so for a rule.
WAITING_STATES = (RequestState.PENDING_APPROVAL, RequestState.NEEDS_REAPPROVAL)

S = ApprovalRuleVersion.State


# --- reading and checking what a version says ------------------------------------------------------


def _criteria(
    errors: dict[str, list[str]], *, datalake_accounts, engines, secret_name_prefix, max_expiry_days
) -> dict[str, Any]:
    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    ids = [str(value).strip() for value in (datalake_accounts or [])]
    accounts = list(AwsAccount.objects.filter(account_id__in=ids, is_datalake=True).order_by("account_id"))
    unknown = sorted(set(ids) - {account.account_id for account in accounts})
    if not ids:
        add("datalake_accounts", "Name at least one DataLake account.")
    elif unknown:
        add("datalake_accounts", f"Not registered DataLake accounts: {', '.join(unknown)}.")
    engine_list = sorted({str(engine).strip() for engine in (engines or [])})
    if not engine_list:
        add("engines", "Name at least one engine.")
    elif bad := [engine for engine in engine_list if engine not in ENGINES]:
        add("engines", f"Not engines the portal knows: {', '.join(bad)} (known: {', '.join(sorted(ENGINES))}).")
    prefix = str(secret_name_prefix or "").strip()
    if not prefix:
        add("secret_name_prefix", "Name the prefix of the secrets' names (e.g. prod/orders/).")
    elif len(prefix) > SECRET_NAME_PREFIX_MAX:
        add("secret_name_prefix", f"Must be at most {SECRET_NAME_PREFIX_MAX} characters.")
    elif not _SECRET_NAME.match(prefix):
        add("secret_name_prefix", "A secret name uses only letters, digits and /_+=.@-.")
    days = max_expiry_days
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EXPIRY_DAYS_LIMIT:
        add("max_expiry_days", f"A whole number of days from 1 to {MAX_EXPIRY_DAYS_LIMIT}.")
    return {
        "datalake_accounts": accounts,
        "engines": engine_list,
        "secret_name_prefix": prefix,
        "max_expiry_days": days,
    }


def version_summary(version: ApprovalRuleVersion) -> dict[str, Any]:
    """What a version says, as the audit trail and the API show it."""
    return {
        "rule": version.rule.name,
        "rule_id": version.rule_id,
        "version": version.number,
        "enabled": version.enabled,
        "datalake_accounts": sorted(account.account_id for account in version.datalake_accounts.all()),
        "engines": list(version.engines),
        "secret_name_prefix": version.secret_name_prefix,
        "max_expiry_days": version.max_expiry_days,
    }


def secret_name_of(secret_arn: str) -> str:
    """The secret's name as its ARN gives it (with Secrets Manager's suffix)."""
    _, _, name = secret_arn.partition(":secret:")
    return name


def version_refusals(version: ApprovalRuleVersion, request: AccessRequest, *, now: datetime) -> list[str]:
    """Why ``version`` does not approve ``request`` now; empty when it does."""
    refusals = []
    if not version.enabled or version.state != S.IN_FORCE:
        refusals.append("the rule is not in force")
    if version.rule.remote_account_id != request.remote_account_id:
        refusals.append("the rule belongs to another Remote account")
    if request.preflight_status != AccessRequest.PreflightStatus.PASSED or not request.plan_hash:
        refusals.append("preflight has not passed")
    if request.datalake_account_id not in {account.pk for account in version.datalake_accounts.all()}:
        refusals.append(f"DataLake account {request.datalake_account.account_id} is not one of the rule's")
    if request.engine not in version.engines:
        refusals.append(f"engine {request.engine} is not one of the rule's")
    if not secret_name_of(request.secret_arn).startswith(version.secret_name_prefix):
        refusals.append(f"the secret's name does not start with {version.secret_name_prefix}")
    if request.expires_at is None:
        refusals.append("the request does not expire")
    elif request.expires_at > now + timedelta(days=version.max_expiry_days):
        refusals.append(f"the request expires later than {version.max_expiry_days} days from now")
    if not permissions.can_file_for(request.requester, request.datalake_account):
        refusals.append("the requester may not file for the DataLake account now")
    deciders = {version.proposed_by_id, *(user.pk for user in version.approved_by.all())}
    if request.requester_id in deciders:
        refusals.append("the requester proposed or approved this version of the rule")
    return refusals


# --- proposing ---------------------------------------------------------------------------------------


def _audit(version: ApprovalRuleVersion, action: str, *, user=None, source_ip=None, **details) -> None:
    record_event(
        action=action,
        actor=user,
        source_ip=source_ip,
        account=version.rule.remote_account,
        details={**version_summary(version), **details},
    )


def _create_version(rule: ApprovalRule, *, user, enabled: bool, criteria: dict[str, Any], comment: str, kind: str,
                    source_ip: str | None) -> ApprovalRuleVersion:  # fmt: skip
    if rule.versions.filter(state=S.PROPOSED).exists():
        raise InvalidTransition(f"Rule {rule.name} already has a proposed change: decide that one first.")
    number = (rule.versions.aggregate(last=Max("number"))["last"] or 0) + 1
    accounts = criteria.pop("datalake_accounts")
    version = ApprovalRuleVersion.objects.create(
        rule=rule, number=number, enabled=enabled, comment=comment, proposed_by=user, **criteria
    )
    version.datalake_accounts.set(accounts)
    _audit(version, "rule.proposed", user=user, source_ip=source_ip, kind=kind, comment=comment)
    return version


def _ensure_proposer(user, account: AwsAccount) -> None:
    if not permissions.can_propose_rule(user, account):
        raise NotAllowed(f"Only approvers of the Remote account {account.account_id} may propose its rules.")


def rule_propose(
    *,
    user,
    account_id: str,
    name: str,
    datalake_accounts: list[str],
    engines: list[str],
    secret_name_prefix: str,
    max_expiry_days: int,
    comment: str = "",
    source_ip: str | None = None,
) -> ApprovalRuleVersion:
    """Propose a new rule for a Remote account (its version 1, awaiting the other approvers)."""
    comment = clean_comment(comment)
    account = AwsAccount.objects.filter(account_id=str(account_id or "").strip(), is_remote=True).first()
    if account is None:
        raise ValidationFailed({"account": ["Name a registered Remote account (12 digits)."]})
    _ensure_proposer(user, account)
    errors: dict[str, list[str]] = {}
    name = str(name or "").strip()
    if not name or len(name) > RULE_NAME_MAX or not _RULE_NAME.match(name):
        errors["name"] = [f"A name of 1 to {RULE_NAME_MAX} printable characters."]
    criteria = _criteria(errors, datalake_accounts=datalake_accounts, engines=engines,
                         secret_name_prefix=secret_name_prefix, max_expiry_days=max_expiry_days)  # fmt: skip
    if errors:
        raise ValidationFailed(errors)
    try:
        with transaction.atomic():
            _ensure_proposer(user, account)
            rule = ApprovalRule.objects.create(remote_account=account, name=name)
            return _create_version(rule, user=user, enabled=True, criteria=criteria, comment=comment, kind="new",
                                   source_ip=source_ip)  # fmt: skip
    except IntegrityError:
        raise ValidationFailed({"name": [f"Account {account.account_id} already has a rule named {name}."]}) from None


def _lock_rule_for(user, rule_id: Any) -> ApprovalRule:
    """The rule row, locked; 404 when there is none or ``user`` may not see it."""
    try:
        rule = ApprovalRule.objects.select_for_update(of=("self",)).select_related("remote_account").get(pk=rule_id)
    except (ApprovalRule.DoesNotExist, ValueError, TypeError):
        raise NotFoundForUser() from None
    if not permissions.can_view_rules(user, rule.remote_account):
        raise NotFoundForUser()
    return rule


def in_force_version(rule: ApprovalRule) -> ApprovalRuleVersion | None:
    return rule.versions.filter(state=S.IN_FORCE).first()


def rule_change_propose(
    *,
    rule_id,
    user,
    datalake_accounts: list[str],
    engines: list[str],
    secret_name_prefix: str,
    max_expiry_days: int,
    comment: str = "",
    source_ip: str | None = None,
) -> ApprovalRuleVersion:
    """Propose new criteria for a rule (a new version; enabled, whatever the one in force is)."""
    comment = clean_comment(comment)
    errors: dict[str, list[str]] = {}
    criteria = _criteria(errors, datalake_accounts=datalake_accounts, engines=engines,
                         secret_name_prefix=secret_name_prefix, max_expiry_days=max_expiry_days)  # fmt: skip
    with transaction.atomic():
        rule = _lock_rule_for(user, rule_id)
        _ensure_proposer(user, rule.remote_account)
        if errors:
            raise ValidationFailed(errors)
        return _create_version(rule, user=user, enabled=True, criteria=criteria, comment=comment, kind="change",
                               source_ip=source_ip)  # fmt: skip


def rule_disable_propose(*, rule_id, user, comment: str = "", source_ip: str | None = None) -> ApprovalRuleVersion:
    """Propose to disable a rule: a version with the criteria in force that approves nothing."""
    comment = clean_comment(comment)
    with transaction.atomic():
        rule = _lock_rule_for(user, rule_id)
        _ensure_proposer(user, rule.remote_account)
        current = in_force_version(rule)
        if current is None or not current.enabled:
            raise InvalidTransition(f"Rule {rule.name} is not in force: there is nothing to disable.")
        criteria = {
            "datalake_accounts": list(current.datalake_accounts.all()),
            "engines": list(current.engines),
            "secret_name_prefix": current.secret_name_prefix,
            "max_expiry_days": current.max_expiry_days,
        }
        return _create_version(rule, user=user, enabled=False, criteria=criteria, comment=comment, kind="disable",
                               source_ip=source_ip)  # fmt: skip


# --- deciding a proposed version ------------------------------------------------------------------------


def _proposed(rule: ApprovalRule, version: Any) -> ApprovalRuleVersion:
    proposed = rule.versions.filter(state=S.PROPOSED).select_related("rule__remote_account").first()
    if proposed is None:
        raise InvalidTransition(f"Rule {rule.name} has no proposed change to decide.")
    if str(version) != str(proposed.number):
        # Like a plan hash: a decision is about the version the approver was shown.
        raise InvalidTransition(
            f"The proposed change of rule {rule.name} is version {proposed.number}, not {version}: look at it again."
        )
    return proposed


def _counted_approvals(version: ApprovalRuleVersion) -> int:
    # Only people who approve for the account now, and never the proposer.
    return (
        version.approved_by.filter(pk__in=membership.approvers_of(version.rule.remote_account_id))
        .exclude(pk=version.proposed_by_id)
        .count()
    )


def rule_version_approve(
    *, rule_id, user, version: int, comment: str = "", source_ip: str | None = None
) -> ApprovalRuleVersion:
    """Approve the rule's proposed version ``version`` (the one the approver was
    shown); it comes into force once the account's required number of
    approvers other than its proposer approved it."""
    comment = clean_comment(comment)
    with transaction.atomic():
        rule = _lock_rule_for(user, rule_id)
        proposed = _proposed(rule, version)
        if proposed.proposed_by_id == user.pk:
            raise NotAllowed("Nobody approves a rule change they proposed.")
        if not permissions.can_approve_rule_version(user, proposed):
            raise NotAllowed(f"Only approvers of the Remote account {rule.remote_account.account_id} decide its rules.")
        if proposed.approved_by.filter(pk=user.pk).exists():
            raise InvalidTransition("You have already approved this version.")
        proposed.approved_by.add(user)
        approvals = _counted_approvals(proposed)
        required = rule.remote_account.required_approvals
        _audit(proposed, "rule.approval", user=user, source_ip=source_ip, comment=comment,
               approvals=approvals, required_approvals=required)  # fmt: skip
        if approvals >= required:
            _bring_into_force(rule, proposed, approvals=approvals, required=required)
    return proposed


def _bring_into_force(rule: ApprovalRule, proposed: ApprovalRuleVersion, *, approvals: int, required: int) -> None:
    now = timezone.now()
    previous = in_force_version(rule)
    if previous is not None:
        previous.state = S.SUPERSEDED
        previous.save(update_fields=["state"])
    proposed.state, proposed.decided_at = S.IN_FORCE, now
    proposed.save(update_fields=["state", "decided_at"])
    _audit(proposed, "rule.in_force", approvals=approvals, required_approvals=required,
           approved_by=sorted(user.get_username() for user in proposed.approved_by.all()),
           proposed_by=proposed.proposed_by.get_username(),
           superseded_version=previous.number if previous is not None else None)  # fmt: skip
    if proposed.enabled:
        account_id = rule.remote_account_id
        transaction.on_commit(lambda: waiting_requests_match(remote_account_id=account_id), robust=True)


def rule_version_reject(
    *, rule_id, user, version: int, comment: str, source_ip: str | None = None
) -> ApprovalRuleVersion:
    """Reject the rule's proposed version (a comment is required); the version in force stays."""
    comment = clean_comment(comment)
    with transaction.atomic():
        rule = _lock_rule_for(user, rule_id)
        proposed = _proposed(rule, version)
        if not permissions.can_reject_rule_version(user, proposed):
            raise NotAllowed(f"Only approvers of the Remote account {rule.remote_account.account_id} decide its rules.")
        if not comment:
            raise ValidationFailed({"comment": ["A comment is required to reject a rule change."]})
        proposed.state, proposed.decided_at = S.REJECTED, timezone.now()
        proposed.rejected_by, proposed.rejection_comment = user, comment
        proposed.save(update_fields=["state", "decided_at", "rejected_by", "rejection_comment"])
        _audit(proposed, "rule.rejected", user=user, source_ip=source_ip, comment=comment)
    return proposed


# --- matching requests ------------------------------------------------------------------------------------


def _versions_in_force(remote_account_id: int) -> list[ApprovalRuleVersion]:
    # The rule rows are locked (after the request's), so a version cannot be
    # superseded or disabled between this read and the decision's commit.
    rules = list(
        ApprovalRule.objects.select_for_update().filter(remote_account_id=remote_account_id).order_by("name", "id")
    )
    return list(
        ApprovalRuleVersion.objects.filter(rule__in=rules, state=S.IN_FORCE, enabled=True)
        .select_related("rule")
        .prefetch_related("datalake_accounts", "approved_by")
        .order_by("rule__name", "rule_id")
    )


def request_match_rules(*, request_id: int, now: datetime | None = None) -> RuleDecision | None:
    """Let the account's rules in force decide the waiting request: record the
    first matching version's approval, and approve the request (scheduling the
    grant after the commit) when that makes the quorum. None when no rule
    approves it (or it is not waiting, or a rule already approved this plan)."""
    now = now or timezone.now()
    with transaction.atomic():
        request = lock_request(request_id)
        if request.state not in WAITING_STATES:
            return None
        if request.rule_decisions.filter(plan_hash=request.plan_hash, approval_round=request.approval_round).exists():
            return None
        for version in _versions_in_force(request.remote_account_id):
            if not version_refusals(version, request, now=now):
                return _approve_by(version, request)
    return None


def _approve_by(version: ApprovalRuleVersion, request: AccessRequest) -> RuleDecision:
    account = request.remote_account
    whole = not account.rules_count_alongside_people
    decision = RuleDecision.objects.create(
        request=request, rule_version=version, plan_hash=request.plan_hash, approval_round=request.approval_round,
        whole_decision=whole,
    )
    label = f"rule {version.rule.name} v{version.number}"
    record_event(
        action="decision.rule_approve",
        actor_label=label,
        request=request,
        target_arn=request.secret_arn,
        details={**version_summary(version), "plan_hash": request.plan_hash, "approval_round": request.approval_round,
                 "whole_decision": whole, "state": request.state},  # fmt: skip
    )
    required = account.required_approvals
    approvals = required if whole else people_approvals(request) + 1
    if approvals >= required:
        move(
            request,
            RequestState.APPROVED,
            verb="approved",
            action="request.approved",
            actor_label=label,
            details={"rule": version.rule.name, "rule_id": version.rule_id, "rule_version": version.number,
                     "approvals": approvals, "required_approvals": required},  # fmt: skip
            decided_at=timezone.now(),
        )
        scheduling.schedule_grant(request)
        transaction.on_commit(lambda: notifications.notify_decided(request))
    else:
        slack_messages.refresh_on_commit(request)
    return decision


def match_on_commit(request: AccessRequest) -> None:
    """Match the request against its account's rules once this transaction commits.

    ``robust``: a failure is logged and leaves the request waiting (the
    periodic sweep matches it again); it never undoes what was committed.
    """
    request_id = request.pk
    transaction.on_commit(lambda: request_match_rules(request_id=request_id), robust=True)


def waiting_requests_match(*, remote_account_id: int | None = None, now: datetime | None = None) -> list[int]:
    """Match the waiting requests (preflight passed, no rule decision on their
    current plan yet) that some version in force could approve; returns the
    ids of those a rule approved (or gave its approval). The criteria read off
    the row narrow the candidates in one query, so a request no rule could
    approve costs the sweep nothing; each candidate is then matched in its own
    transaction, under its lock, with every check (``request_match_rules``)."""
    now = now or timezone.now()
    versions = ApprovalRuleVersion.objects.filter(state=S.IN_FORCE, enabled=True).select_related("rule")
    if remote_account_id is not None:
        versions = versions.filter(rule__remote_account_id=remote_account_id)
    could_match = Q(pk__in=[])
    for version in versions.prefetch_related("datalake_accounts"):
        could_match |= Q(
            remote_account_id=version.rule.remote_account_id,
            datalake_account__in=[account.pk for account in version.datalake_accounts.all()],
            engine__in=version.engines,
            secret_arn__contains=f":secret:{version.secret_name_prefix}",
            expires_at__lte=now + timedelta(days=version.max_expiry_days),
        )
    decided_already = RuleDecision.objects.filter(
        request=OuterRef("pk"), plan_hash=OuterRef("plan_hash"), approval_round=OuterRef("approval_round")
    )
    candidates = (
        AccessRequest.objects.filter(state__in=WAITING_STATES, preflight_status=AccessRequest.PreflightStatus.PASSED)
        .filter(could_match)
        .exclude(Exists(decided_already))
        .order_by("created_at", "id")
        .values_list("pk", flat=True)
    )
    return [request_id for request_id in candidates if request_match_rules(request_id=request_id, now=now) is not None]
