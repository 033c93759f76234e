"""Filing a request and re-running its preflight.

Filing validates every field, runs preflight (read-only AWS calls through
the Remote and DataLake provisioner roles) to find the secret's key, builds
the plan from it and stores everything with the audit event in one
transaction. A request whose preflight fails is still filed, with the
diagnosis, so the requester and the approvers see why; it cannot be approved
until a re-run preflight passes.

No database transaction is open while AWS answers: preflight runs first, then
a short transaction checks again who may do this, writes and audits. (A
transaction held across the round trip would hold row locks, and on SQLite
the database's one write lock, for as long as AWS takes.)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from provisioning.documents import build_plan, plan_hash
from provisioning.errors import InvalidInput, ProvisioningError
from provisioning.preflight import preflight
from requests_app import notifications, permissions
from requests_app.audit import record_event
from requests_app.aws import grant_clients_for
from requests_app.errors import IdempotencyConflict, InvalidTransition, NotAllowed, ValidationFailed
from requests_app.grant_input import submit_arguments
from requests_app.grants import grant_spec_for
from requests_app.models import LIVE_STATES, AccessRequest, AwsAccount, RequestState
from requests_app.plan_lint import lint_into_preflight
from requests_app.services import rules
from requests_app.services.transitions import lock_request_for
from requests_app.slack import messages as slack_messages
from requests_app.validation import validate_request_input

IDEMPOTENCY_KEY_MAX = 255


@dataclass(frozen=True)
class PreflightOutcome:
    ok: bool
    diagnosis: str
    kms_key_arn: str
    report: dict[str, Any]


def _run_preflight(request: AccessRequest) -> PreflightOutcome:
    # Preflight checks the key the requester named (if any) against the
    # secret's actual key, so it must not be handed an earlier resolution.
    spec = dataclasses.replace(grant_spec_for(request), kms_key_arn=request.kms_key_arn or None)
    if request.pk is None:
        # Not filed yet: CloudTrail shows whose filing read the Remote account, and
        # each filing has a session of its own, as each request has.
        spec = dataclasses.replace(spec, grant_id=f"filing-{request.requester_id}-{secrets.token_hex(4)}")
    try:
        report = preflight(
            spec, clients=grant_clients_for(spec), shape_check=request.remote_account.allow_secret_shape_check
        )
    except ProvisioningError as error:
        diagnosis = error.diagnosis or "aws_unavailable"
        return PreflightOutcome(
            ok=False,
            diagnosis=diagnosis,
            kms_key_arn="",
            report={"ok": False, "checks": [], "diagnosis": diagnosis, "kms_key_arn": None,
                    "secret_keys": None, "error": error.message, "aws_request_ids": error.aws_request_ids},
        )
    return PreflightOutcome(
        ok=bool(report.ok),
        diagnosis="" if report.ok else (report.diagnosis or ""),
        kms_key_arn=report.kms_key_arn or "",
        report=report.to_dict(),
    )


def _apply_preflight(request: AccessRequest, outcome: PreflightOutcome) -> list[str]:
    """Store ``outcome`` and rebuild the plan on ``request`` (not saved); returns the changed fields."""
    # The plan uses the key as far as it is known: the secret's key as
    # preflight resolved it, else the one the requester named.
    key = outcome.kms_key_arn or request.kms_key_arn
    plan: dict[str, Any] = {}
    if key:
        try:
            plan = build_plan(grant_spec_for(request, kms_key_arn=key))
        except InvalidInput:
            # A plan names the key by id; a key known only by an alias (or the
            # AWS-managed key, which has no usable id) gives no plan until a
            # preflight resolves one, and approval is refused until then.
            plan = {}
    request.preflight = outcome.report
    request.preflight_status = (
        AccessRequest.PreflightStatus.PASSED if outcome.ok else AccessRequest.PreflightStatus.FAILED
    )
    request.diagnosis = outcome.diagnosis
    request.resolved_kms_key_arn = outcome.kms_key_arn
    request.plan = plan
    request.plan_hash = plan_hash(plan) if plan else ""
    lint_into_preflight(request)
    return ["preflight", "preflight_status", "diagnosis", "resolved_kms_key_arn", "plan", "plan_hash", "updated_at"]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _fingerprint(fields: dict[str, Any]) -> str:
    body = {
        name: (value.isoformat() if isinstance(value, datetime) else _text(value)) for name, value in fields.items()
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _replay(requester, key: str, fingerprint: str, *, model=AccessRequest):
    """What ``requester`` filed with ``key`` before (a request, or a ``model``
    row), if anything; IdempotencyConflict when it was filed with another body."""
    existing = model.objects.filter(requester=requester, idempotency_key=key).first()
    if existing is not None and existing.idempotency_fingerprint != fingerprint:
        raise IdempotencyConflict(
            f"This idempotency key was already used for request #{existing.pk} with a different body."
        )
    return existing


def _ensure_can_file(requester, account: AwsAccount) -> None:
    if not permissions.can_file_for(requester, account):
        raise NotAllowed(f"You are not a requester for DataLake account {account.account_id}.")


def _held_names(cleaned: dict[str, Any]) -> dict[str, list[str]]:
    # The database's partial unique constraints caught a request filed at the
    # same moment; say which name it took.
    live = AccessRequest.objects.filter(datalake_account=cleaned["datalake_account"], state__in=LIVE_STATES)
    errors: dict[str, list[str]] = {}
    if live.filter(role_name=cleaned["role_name"]).exists():
        errors["role_name"] = [f"{cleaned['role_name']} is already held by another live request for this DataLake account."]
    if live.filter(region=cleaned["region"], endpoint_identifier=cleaned["endpoint_identifier"]).exists():
        errors["endpoint_identifier"] = [
            f"{cleaned['endpoint_identifier']} is already held by another live request for this DataLake account "
            f"in {cleaned['region']}."
        ]
    return errors


def access_request_submit(
    *, requester, idempotency_key: str = "", source_ip: str | None = None, **grant_input: Any
) -> AccessRequest:
    """File a request for DMS in a DataLake account to read a Remote secret.

    ``grant_input`` is the request's fields as keywords (``grant_input.SUBMIT_INPUT``:
    ``datalake_account_id``, ``secret_arn``, ``engine``, ``endpoint_identifier``,
    ``justification`` and the optional ones). The same requester sending the same
    idempotency key with the same body gets the request filed the first time;
    with another body, IdempotencyConflict.
    """
    fields = submit_arguments(grant_input)
    if not permissions.is_active_user(requester):
        raise NotAllowed("Sign in to file a request.")
    key = _text(idempotency_key)
    if len(key) > IDEMPOTENCY_KEY_MAX:
        raise ValidationFailed({"idempotency_key": [f"Must be at most {IDEMPOTENCY_KEY_MAX} characters."]})
    fingerprint = _fingerprint(fields) if key else ""
    if key and (existing := _replay(requester, key, fingerprint)) is not None:
        return existing

    named = AwsAccount.objects.filter(account_id=_text(fields["datalake_account_id"]), is_datalake=True).first()
    if named is not None:
        _ensure_can_file(requester, named)
    cleaned = validate_request_input(**fields)
    # Preflight reads AWS before the row exists: a request not yet filed owns no
    # role or endpoint, so the id it will get changes none of its checks.
    outcome = _run_preflight(AccessRequest(requester=requester, **cleaned))
    try:
        with transaction.atomic():
            return _file(requester, cleaned, outcome, key=key, fingerprint=fingerprint, source_ip=source_ip)
    except IntegrityError:
        if key and (existing := _replay(requester, key, fingerprint)) is not None:
            return existing
        raise ValidationFailed(
            _held_names(cleaned)
            or {"endpoint_identifier": ["Another request was filed with the same names at the same moment."]}
        ) from None


def _file(
    requester,
    cleaned: dict[str, Any],
    outcome: PreflightOutcome,
    *,
    key: str,
    fingerprint: str,
    source_ip: str | None,
    notify: bool = True,
) -> AccessRequest:
    # Checked again now that AWS has answered: a requester removed meanwhile files nothing.
    _ensure_can_file(requester, cleaned["datalake_account"])
    request = AccessRequest.objects.create(
        requester=requester,
        state=RequestState.PENDING_APPROVAL,
        idempotency_key=key,
        idempotency_fingerprint=fingerprint,
        **cleaned,
    )
    # The plan names the request (statement Sids, tags), so it is built once the row has its id.
    request.save(update_fields=_apply_preflight(request, outcome))
    record_event(
        action="request.submitted",
        actor=requester,
        source_ip=source_ip,
        request=request,
        target_arn=request.secret_arn,
        details={
            "from_state": None,
            "to_state": request.state,
            "plan_hash": request.plan_hash,
            "preflight_status": request.preflight_status,
            "diagnosis": request.diagnosis,
            "role_name": request.role_name,
            "endpoint_identifier": request.endpoint_identifier,
        },
    )
    if notify:  # a set's grants are announced once, with the set
        transaction.on_commit(lambda: notifications.notify_submitted(request))
    rules.match_on_commit(request)
    return request


def access_request_refresh_preflight(*, request_id, user, source_ip: str | None = None) -> AccessRequest:
    """Run preflight again for a request awaiting approval and rebuild its plan.

    If the plan changed (say the secret now uses another key), its new
    ``plan_hash`` is recorded and approvals of the old plan stop counting.
    Preflight runs with no transaction open; who may and the state are checked
    before it and again, on the locked row, before its result is stored.
    """
    with transaction.atomic():
        _ensure_can_refresh(user, lock_request_for(user=user, request_id=request_id))
    outcome = _run_preflight(
        AccessRequest.objects.select_related("datalake_account", "remote_account").get(pk=request_id)
    )
    with transaction.atomic():
        request = lock_request_for(user=user, request_id=request_id)
        _ensure_can_refresh(user, request)
        previous_hash, previous_status = request.plan_hash, request.preflight_status
        request.save(update_fields=_apply_preflight(request, outcome))
        record_event(
            action="request.preflight_refreshed",
            actor=user,
            source_ip=source_ip,
            request=request,
            target_arn=request.secret_arn,
            details={
                "previous_plan_hash": previous_hash,
                "plan_hash": request.plan_hash,
                "plan_changed": previous_hash != request.plan_hash,
                "previous_preflight_status": previous_status,
                "preflight_status": request.preflight_status,
                "diagnosis": request.diagnosis,
            },
        )
        # The Slack message shows the plan and preflight outcome as they are now.
        slack_messages.refresh_on_commit(request)
        rules.match_on_commit(request)
    return request


def _ensure_can_refresh(user, request: AccessRequest) -> None:
    if not permissions.can_refresh_preflight(user, request):
        raise NotAllowed("Only the requester or an approver of the Remote account may re-run preflight.")
    if request.state != RequestState.PENDING_APPROVAL:
        raise InvalidTransition(
            f"Request #{request.pk} is {RequestState(request.state).label.lower()}: "
            "preflight is re-run only while a request awaits approval."
        )
