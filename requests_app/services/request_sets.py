"""A request naming several grants: filing it, its one plan, approving it once.

Each grant of a set is an ``AccessRequest`` of its own, filed with the same
rules as a single request (``grant_input.GRANT_INPUT`` repeated, the request's
own fields given once) and provisioned, retried, revoked and audited on its
own. The set adds:

- filing all or nothing: one broken grant files none, and the errors name
  each grant by its position (``grants.3.engine``, as the API spells a nested error);
- one plan (``set_plans.set_plan``): every grant awaiting approval, with each statement
  grouped under the secret and the key it goes into; its ``plan_hash`` is what
  an approver approves, once, for all of them (each grant records the
  approval of its own plan, in the same transaction);
- rejecting or revoking every grant at once.

All grants of a set read secrets of one Remote account, whose approvers
decide for the whole set.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import IntegrityError, connections, transaction

from requests_app import notifications, permissions
from requests_app.audit import record_event
from requests_app.errors import (
    InvalidTransition,
    NotAllowed,
    NotFoundForUser,
    PlanChanged,
    ValidationFailed,
)
from requests_app.grant_input import GRANT_INPUT, SUBMIT_INPUT
from requests_app.models import AccessRequest, AwsAccount, RequestSet, RequestState
from requests_app.services import decisions, lifecycle
from requests_app.set_plans import AWAITING, set_plan_hash
from requests_app.services.submission import (
    IDEMPOTENCY_KEY_MAX,
    _ensure_can_file,
    _file,
    _fingerprint,
    _held_names,
    _replay,
    _run_preflight,
    _text,
)
from requests_app.validation import clean_comment, validate_request_input

MAX_GRANTS = 50
# Preflights of one filing run side by side, at most this many at once.
PREFLIGHT_THREADS = 8

SET_FIELDS = tuple(field for field in SUBMIT_INPUT if not field.per_grant)
GRANT_FIELDS = frozenset(field.name for field in GRANT_INPUT)
GRANT_ARGUMENTS = frozenset(field.argument for field in GRANT_INPUT)


def grant_error_key(index: int, field: str) -> str:
    """How an error of grant ``index``'s field is keyed (``grants.3.engine``, as the API spells a nested error)."""
    return f"grants.{index}.{field}"


# --- filing ------------------------------------------------------------------


def _validate(shared: Mapping[str, Any], grants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every grant's cleaned fields; ValidationFailed with every error of every grant."""
    errors: dict[str, list[str]] = {}
    if not grants:
        raise ValidationFailed({"grants": ["Name at least one grant."]})
    if len(grants) > MAX_GRANTS:
        raise ValidationFailed({"grants": [f"At most {MAX_GRANTS} grants in one request (got {len(grants)})."]})
    cleaned: list[dict[str, Any]] = []
    for index, grant in enumerate(grants):
        if not isinstance(grant, Mapping):
            errors[f"grants.{index}"] = ["Each grant is an object of its fields."]
            continue
        # A grant is data, not keywords: what is missing or unknown is an error
        # of that grant (the submit service's signature would raise TypeError).
        if unknown := sorted(set(map(str, grant)) - GRANT_ARGUMENTS):
            for name in unknown:
                errors[grant_error_key(index, name)] = [f"Not a field of a grant: {name}."]
            continue
        if missing := [field for field in GRANT_INPUT if field.required and field.argument not in grant]:
            for field in missing:
                errors[grant_error_key(index, field.name)] = ["This field is required."]
            continue
        try:
            cleaned.append(validate_request_input(**shared, **grant))
        except ValidationFailed as error:
            for field, messages in error.errors.items():
                key = grant_error_key(index, field) if field in GRANT_FIELDS else field
                errors.setdefault(key, []).extend(m for m in messages if m not in errors.get(key, []))
    if not errors:
        _check_together(grants, cleaned, errors)
    if errors:
        raise ValidationFailed(errors)
    return cleaned


def _check_together(
    grants: Sequence[Mapping[str, Any]], cleaned: list[dict[str, Any]], errors: dict[str, list[str]]
) -> None:
    """What no grant can break alone: one Remote account, names used once.

    Names are compared regardless of case, as IAM compares role names and DMS
    endpoint identifiers (and as ``validation`` compares a new request's with
    the live requests'): two grants spelling one name in two ways would both
    be filed, and the second would fail in AWS.
    """
    remote = cleaned[0]["remote_account"]
    roles: dict[str, int] = {}
    endpoints: dict[tuple[str, str], int] = {}
    for index, grant in enumerate(cleaned):
        if grant["remote_account"] != remote:
            errors[grant_error_key(index, "secret_arn")] = [
                f"Every grant of one request reads secrets of one Remote account: the first grant's secret is in "
                f"{remote.account_id}, this one's in {grant['remote_account'].account_id}. File them separately."
            ]
        if (first := roles.setdefault(grant["role_name"].casefold(), index)) != index:
            other = cleaned[first]["endpoint_identifier"]
            if _text(grants[index].get("role_name")):
                message = f"{grant['role_name']} is also the role of the grant for {other}."
            else:
                message = (
                    f"The role name derived from the endpoint identifier ({grant['role_name']}) is also the role of "
                    f"the grant for {other}; choose a role name."
                )
            errors[grant_error_key(index, "role_name")] = [message]
        where = (grant["region"], grant["endpoint_identifier"].casefold())
        if (first := endpoints.setdefault(where, index)) != index:
            errors[grant_error_key(index, "endpoint_identifier")] = [
                f"{grant['endpoint_identifier']} is named by an earlier grant too, in {grant['region']}: "
                "each grant needs its own endpoint."
            ]


def _preflights(requester, cleaned: list[dict[str, Any]]) -> list:
    def one(fields: dict[str, Any]):
        try:
            return _run_preflight(AccessRequest(requester=requester, **fields))
        finally:
            connections.close_all()

    if len(cleaned) == 1:
        return [_run_preflight(AccessRequest(requester=requester, **cleaned[0]))]
    with ThreadPoolExecutor(max_workers=min(PREFLIGHT_THREADS, len(cleaned))) as pool:
        return list(pool.map(one, cleaned))


def _fingerprint_of(shared: Mapping[str, Any], grants: Sequence[Mapping[str, Any]]) -> str:
    flat = {f"grants.{index}.{name}": value for index, grant in enumerate(grants) for name, value in sorted(grant.items())}
    return _fingerprint({**shared, **flat, "grants": str(len(grants))})


def request_set_submit(
    *,
    requester,
    grants: Sequence[Mapping[str, Any]],
    idempotency_key: str = "",
    source_ip: str | None = None,
    **shared: Any,
) -> RequestSet:
    """File one request naming several grants.

    ``shared`` are the request's own fields as the submit service's keywords
    (``datalake_account_id``, ``justification``, ``expires_at``); each of
    ``grants`` holds one grant's fields (``secret_arn``, ``engine``,
    ``endpoint_identifier`` and the optional ones). Every grant is validated
    and preflighted as a request of its own would be; one broken grant files
    none. Each grant is then filed (and audited) as a request that belongs to
    the set, and the Remote account's approvers are told once. The same
    requester sending the same idempotency key with the same body gets the set
    filed the first time; with another body, IdempotencyConflict.
    """
    if unknown := sorted(set(shared) - {field.argument for field in SET_FIELDS}):
        raise TypeError(f"unexpected keyword arguments: {', '.join(unknown)}")
    if not permissions.is_active_user(requester):
        raise NotAllowed("Sign in to file a request.")
    key = _text(idempotency_key)
    if len(key) > IDEMPOTENCY_KEY_MAX:
        raise ValidationFailed({"idempotency_key": [f"Must be at most {IDEMPOTENCY_KEY_MAX} characters."]})
    fingerprint = _fingerprint_of(shared, grants) if key else ""
    if key and (existing := _replay(requester, key, fingerprint, model=RequestSet)) is not None:
        return existing
    named = AwsAccount.objects.filter(account_id=_text(shared.get("datalake_account_id")), is_datalake=True).first()
    if named is not None:
        _ensure_can_file(requester, named)
    cleaned = _validate(shared, grants)
    outcomes = _preflights(requester, cleaned)
    try:
        with transaction.atomic():
            first = cleaned[0]
            request_set = RequestSet.objects.create(
                requester=requester,
                datalake_account=first["datalake_account"],
                remote_account=first["remote_account"],
                justification=first["justification"],
                expires_at=first["expires_at"],
                idempotency_key=key,
                idempotency_fingerprint=fingerprint,
            )
            filed = [
                _file(requester, {**fields, "request_set": request_set}, outcome, key="", fingerprint="",
                      source_ip=source_ip, notify=False)
                for fields, outcome in zip(cleaned, outcomes)
            ]  # fmt: skip
            record_event(
                action="request_set.submitted",
                actor=requester,
                source_ip=source_ip,
                account=request_set.remote_account,
                details={
                    "request_set": request_set.pk,
                    "requests": [grant.pk for grant in filed],
                    "plan_hash": set_plan_hash(filed),
                },
            )
            transaction.on_commit(lambda: notifications.notify_set_submitted(request_set))
    except IntegrityError:
        if key and (existing := _replay(requester, key, fingerprint, model=RequestSet)) is not None:
            return existing  # the same key, filed by a retry at the same moment
        # Another request took one of the names at the same moment; say which.
        errors = {
            grant_error_key(index, field): messages
            for index, fields in enumerate(cleaned)
            for field, messages in _held_names(fields).items()
        }
        raise ValidationFailed(
            errors or {"grants": ["Another request was filed with the same names at the same moment."]}
        ) from None
    return request_set


# --- deciding and revoking -----------------------------------------------------


def lock_set_for(*, user, set_id: Any) -> tuple[RequestSet, list[AccessRequest]]:
    """The set and its grants, locked (oldest first); 404 when ``user`` may see none of them."""
    try:
        request_set = RequestSet.objects.select_for_update().select_related("remote_account").get(pk=int(set_id))
    except (RequestSet.DoesNotExist, TypeError, ValueError):
        raise NotFoundForUser() from None
    grants = list(
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("datalake_account", "remote_account", "requester")
        .filter(request_set=request_set)
        .order_by("pk")
    )
    if not any(permissions.can_view(user, grant) for grant in grants):
        raise NotFoundForUser()
    return request_set, grants


def request_set_approve(
    *, set_id, user, plan_hash: str, comment: str = "", source_ip: str | None = None
) -> RequestSet:
    """Approve every grant of the set awaiting approval, as shown in the plan
    whose hash is ``plan_hash``: all of them or, if any may not be approved
    (a failed preflight, the approver deciding on their own request), none."""
    comment = clean_comment(comment)
    with transaction.atomic():
        request_set, grants = lock_set_for(user=user, set_id=set_id)
        awaiting = [grant for grant in grants if grant.state in AWAITING]
        if not awaiting:
            raise InvalidTransition(f"No grant of request set #{request_set.pk} awaits approval.")
        # Who may, before anything about the plan (whose hash a 409 would name).
        for grant in awaiting:
            decisions.ensure_decider(user, grant, verb="approve")
        current = set_plan_hash(awaiting)
        if not plan_hash or plan_hash != current:
            raise PlanChanged(current)
        for grant in awaiting:
            try:
                decisions.approve_locked(
                    grant, user=user, plan_hash=grant.plan_hash, comment=comment, source_ip=source_ip, notify=False
                )
            except PlanChanged:
                # The set's hash matched, so a grant's own plan cannot have
                # changed under this lock; were it to, the set's plan did.
                raise PlanChanged(current) from None
            except (NotAllowed, InvalidTransition) as error:
                raise type(error)(f"Grant #{grant.pk} ({grant.endpoint_identifier}): {error.message}") from None
        record_event(
            action="request_set.approved",
            actor=user,
            source_ip=source_ip,
            account=request_set.remote_account,
            details={"request_set": request_set.pk, "plan_hash": current, "requests": [g.pk for g in awaiting],
                     "approved": [g.pk for g in awaiting if g.state == RequestState.APPROVED], "comment": comment},
        )  # fmt: skip
        transaction.on_commit(lambda: notifications.notify_set_decided(request_set, awaiting, comment=comment))
    return request_set


def request_set_reject(*, set_id, user, comment: str, source_ip: str | None = None) -> RequestSet:
    """Reject every grant of the set that awaits a first decision (a comment is
    required); the requester is told once."""
    comment = clean_comment(comment)
    with transaction.atomic():
        request_set, grants = lock_set_for(user=user, set_id=set_id)
        pending = [grant for grant in grants if grant.state == RequestState.PENDING_APPROVAL]
        if not pending:
            raise InvalidTransition(f"No grant of request set #{request_set.pk} awaits a first decision.")
        rejected = [
            decisions.access_request_reject(
                request_id=grant.pk, user=user, comment=comment, source_ip=source_ip, notify=False
            )
            for grant in pending
        ]
        record_event(
            action="request_set.rejected",
            actor=user,
            source_ip=source_ip,
            account=request_set.remote_account,
            details={"request_set": request_set.pk, "requests": [g.pk for g in pending], "comment": comment},
        )
        transaction.on_commit(lambda: notifications.notify_set_decided(request_set, rejected, comment=comment))
    return request_set


def request_set_revoke(*, set_id, user, source_ip: str | None = None) -> RequestSet:
    """Revoke every grant of the set that can be revoked now (active, failed, or
    sent back for re-approval); the others are left as they are."""
    with transaction.atomic():
        request_set, grants = lock_set_for(user=user, set_id=set_id)
        revocable = [grant for grant in grants if grant.can_move_to(RequestState.REVOKING)]
        if not revocable:
            raise InvalidTransition(f"No grant of request set #{request_set.pk} can be revoked now.")
        for grant in revocable:
            lifecycle.access_request_revoke(request_id=grant.pk, user=user, source_ip=source_ip)
    return request_set
