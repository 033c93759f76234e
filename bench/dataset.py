"""Loading a portal of the size operators run: requests with their steps and
decisions, and an audit trail forming one valid hash chain.

Rows go in with COPY. The chain is computed here with the portal's own
``chain_hash`` and continues from the last event already stored, so the
loaded trail verifies like one written event by event. Nothing else may
write audit events while a batch loads (the bench loads before anything runs).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from json.encoder import encode_basestring_ascii
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from django.db import connection, transaction

from provisioning.documents import build_plan, plan_hash
from provisioning.steps import table
from requests_app.audit import GENESIS_HASH, chain_hash, signing_key
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, AuditEvent, Decision, ProvisioningStep, RequestState

# What a long-running portal holds, per 100 requests.
STATE_MIX = (
    (RequestState.ACTIVE, 60),
    (RequestState.REVOKED, 15),
    (RequestState.PENDING_APPROVAL, 10),
    (RequestState.REJECTED, 6),
    (RequestState.CANCELLED, 5),
    (RequestState.FAILED, 4),
)
GRANTED_STATES = (RequestState.ACTIVE, RequestState.REVOKED, RequestState.FAILED)
DECIDED_STATES = (*GRANTED_STATES, RequestState.REJECTED)
# A year of history, newest last.
HISTORY = timedelta(days=365)
SOURCE_IP = "10.20.30.40"
# The lifecycle's events, in order; a request's later events are periodic checks.
LIFECYCLE = (
    "request.submitted",
    "decision.approve",
    "request.approved",
    "request.provisioning",
    *(step.action for step in table.steps_of(table.GRANT)),
    "request.active",
)
# The plan document each writing grant step writes, by the resource it builds.
DOCUMENT_FOR_ACTION = {
    table.for_resource(table.GRANT, resource).action: document
    for resource, document in (
        (table.ROLE, "role_inline_policy"),
        (table.SECRET, "secret_policy_statement"),
        (table.KEY, "key_policy_statement"),
        (table.ENDPOINT, "endpoint_settings"),
    )
}


def _state_of(index: int) -> str:
    # 37 is prime to 100: any 20 consecutive requests already mix the states.
    slot = (index * 37) % 100
    for state, share in STATE_MIX:
        if slot < share:
            return state
        slot -= share
    raise AssertionError("STATE_MIX must add up to 100")


def _copy(model, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _request_ids(template: AccessRequest, count: int, first: int, start: datetime, step: timedelta) -> list[int]:
    """COPY ``count`` requests shaped like ``template``, named ``hist-<n>``; their ids."""
    columns = [field.column for field in AccessRequest._meta.concrete_fields if field.column != "id"]
    marker = f"bench-load-{first}"

    def rows() -> Iterator[list]:
        for number in range(first, first + count):
            name = f"hist-{number:06d}"
            created = start + step * number
            state = _state_of(number)
            spec = replace(grant_spec_for(template), grant_id=str(number), endpoint_identifier=name, role_name=name)
            plan = build_plan(spec)
            values = {
                **{field.column: getattr(template, field.attname) for field in AccessRequest._meta.concrete_fields},
                "endpoint_identifier": name,
                "role_name": name,
                "justification": f"Replicate {name} into the data lake. {marker}",
                "state": state,
                "plan": json.dumps(plan),
                "plan_hash": plan_hash(plan),
                "preflight": json.dumps(template.preflight),
                "diagnosis": "connection_failed" if state == RequestState.FAILED else "",
                "role_arn": spec.role_arn if state in GRANTED_STATES else "",
                "endpoint_arn": f"arn:aws:dms:{spec.region}:{spec.datalake.account_id}:endpoint:{name.upper()}"
                if state in GRANTED_STATES else "",
                "created_at": created,
                "updated_at": created + timedelta(minutes=5),
                "decided_at": created + timedelta(minutes=2) if state in DECIDED_STATES else None,
                "completed_at": created + timedelta(minutes=3) if state == RequestState.ACTIVE else None,
                "idempotency_key": "",
                "idempotency_fingerprint": "",
            }
            # JSON columns (drift, …) travel through COPY as JSON text.
            yield [json.dumps(value) if isinstance(value, (dict, list)) else values[column]
                   for column, value in ((column, values[column]) for column in columns)]

    _copy(AccessRequest, columns, rows())
    return list(
        AccessRequest.objects.filter(justification__endswith=marker).order_by("created_at").values_list("pk", flat=True)
    )


def _load_steps_and_decisions(requests: Sequence[AccessRequest], approver_id: int) -> None:
    step_columns = ("request_id", "phase", "name", "position", "status", "attempts", "started_at", "finished_at",
                    "error", "diagnosis", "aws_request_ids", "before", "after", "targets")

    def steps() -> Iterator[tuple]:
        for request in requests:
            if request.state not in GRANTED_STATES:
                continue
            phases = [("grant", table.names(table.GRANT))]
            if request.state == RequestState.REVOKED:
                phases.append(("revoke", table.names(table.REVOKE)))
            for phase, names in phases:
                for position, name in enumerate(names):
                    failed = request.state == RequestState.FAILED and name == table.VERIFY
                    document = request.plan.get(DOCUMENT_FOR_ACTION.get(table.step(name).action, ""), None)
                    at = request.created_at + timedelta(minutes=2, seconds=position)
                    yield (
                        request.pk, phase, name, position, "failed" if failed else "succeeded", 1, at,
                        at + timedelta(milliseconds=300), "DMS could not reach the database." if failed else "",
                        "connection_failed" if failed else "",
                        json.dumps([f"{request.pk:08d}-{position:04d}-0000-0000-000000000000"]),
                        None, json.dumps(document) if document is not None and phase == "grant" else None,
                        json.dumps([]),
                    )

    _copy(ProvisioningStep, step_columns, steps())
    decisions = [
        (request.pk, approver_id, "reject" if request.state == RequestState.REJECTED else "approve",
         "Not for production data." if request.state == RequestState.REJECTED else "", request.plan_hash,
         request.approval_round, request.created_at + timedelta(minutes=2))
        for request in requests
        if request.state in DECIDED_STATES
    ]
    _copy(
        Decision,
        ("request_id", "approver_id", "outcome", "comment", "plan_hash", "approval_round", "created_at"),
        decisions,
    )


_compact = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode
# The periodic check's details are the same every time.
DRIFT_DETAILS = {"drift": False, "checked": ["role", "secret_policy", "key_policy", "endpoint"]}
DRIFT_JSON = _compact(DRIFT_DETAILS)
# Hashes recomputed with the portal's own ``chain_hash`` at the start of each
# batch: if its canonical form ever changes, the load stops at once.
CHECKED_PER_BATCH = 50


def _scalar(value) -> str:
    """The JSON text of an int, None or str, as ``canonical_event`` writes it."""
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return encode_basestring_ascii(value)


def _event_rows(requests: Sequence[AccessRequest], per_request: int, people: dict[str, tuple[int, str]],
                prev_hash: str) -> Iterator[tuple]:
    """The COPY rows of each request's events, chained from ``prev_hash``.

    The canonical text that is hashed is assembled from parts computed once
    per request and per action (``requests_app.audit.canonical_event`` would
    serialise every field of every event again, the slow part of a load);
    the first events are checked against ``chain_hash`` itself.
    """
    checked = 0
    key_id, key = signing_key()
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    who: dict[str, tuple] = {}
    for action in (*LIFECYCLE, "drift.checked"):
        human = action in ("request.submitted", "decision.approve", "request.approved")
        actor_id, label = people["requester" if action == "request.submitted" else "approver"] if human else (None, "worker")
        source_ip = SOURCE_IP if human else None
        text = f'"action":{_scalar(action)},"actor_id":{_scalar(actor_id)},"actor_label":{_scalar(label)},'
        who[action] = (human, actor_id, label, source_ip, text, f',"source_ip":{_scalar(source_ip)}')
    for request in requests:
        head = f'{{"account_id":{_scalar(request.remote_account_id)},'
        tail = f'"target_arn":{_scalar(request.secret_arn)}}}'
        request_part = f',"request_id":{request.pk}'
        for number in range(per_request):
            action = LIFECYCLE[number] if number < len(LIFECYCLE) else "drift.checked"
            human, actor_id, label, source_ip, who_text, ip_text = who[action]
            document_key = DOCUMENT_FOR_ACTION.get(action)
            if document_key:
                details = {"phase": "grant", "step": action[4:], "attempt": 1, "before": None,
                           "after": request.plan.get(document_key), "aws_request_ids": [f"req-{request.pk}-{number}"]}
            elif action == "drift.checked":
                details = DRIFT_DETAILS
            else:
                details = {"plan_hash": request.plan_hash} if human else {"phase": "grant"}
            details_json = DRIFT_JSON if details is DRIFT_DETAILS else _compact(details)
            created_at = request.created_at + timedelta(seconds=10 * number)
            canonical = (f'{head}{who_text}"created_at":"{created_at.isoformat(timespec="microseconds")}",'
                         f'"details":{details_json}{request_part}{ip_text},{tail}')
            mac = keyed.copy()
            mac.update(f"{prev_hash}\n{key_id}\n{canonical}".encode())
            digest = mac.hexdigest()
            if checked < CHECKED_PER_BATCH:
                event = SimpleNamespace(
                    created_at=created_at, actor_id=actor_id, actor_label=label, source_ip=source_ip, action=action,
                    request_id=request.pk, account_id=request.remote_account_id, target_arn=request.secret_arn,
                    details=details, key_id=key_id,
                )
                if digest != chain_hash(prev_hash, event):
                    raise RuntimeError("the loader's canonical events no longer match requests_app.audit's")
                checked += 1
            yield (created_at, actor_id, label, source_ip, action, request.pk, request.remote_account_id,
                   request.secret_arn, details_json, prev_hash, digest, key_id)
            prev_hash = digest


EVENT_COLUMNS = ("created_at", "actor_id", "actor_label", "source_ip", "action", "request_id", "account_id",
                 "target_arn", "details", "prev_hash", "hash", "key_id")


@contextmanager
def _indexes_dropped(model) -> Iterator[None]:
    """Drop the table's secondary indexes, unique and foreign-key constraints
    for the block and build them again after it (inside the caller's
    transaction): building an index over a million rows at once is far
    quicker than updating ten indexes row by row."""
    table = model._meta.db_table
    quoted = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        # Foreign keys are deferred: their checks of rows already loaded in
        # this transaction must run before the table may be altered.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('u', 'f')", [table])
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)", [table, table])
        indexes = cursor.fetchall()
        for name, _ in constraints:
            cursor.execute(f"ALTER TABLE {quoted} DROP CONSTRAINT {connection.ops.quote_name(name)}")
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            cursor.execute(definition)
        for name, definition in constraints:
            cursor.execute(f"ALTER TABLE {quoted} ADD CONSTRAINT {connection.ops.quote_name(name)} {definition}")


def load_batch(template: AccessRequest, *, first: int, count: int, total: int, events_per_request: int,
               requester_id: int, approver_id: int, requester_label: str, approver_label: str,
               bulk: bool = False) -> None:
    """Load requests ``first`` .. ``first + count`` of ``total`` (spread over a
    year ending now), their steps and decisions, and ``events_per_request``
    chained audit events each. ``bulk``: rebuild the audit table's indexes
    after the load instead of maintaining them (for large batches)."""
    step = HISTORY / max(total, 1)
    start = datetime.now(timezone.utc) - HISTORY
    people = {"requester": (requester_id, requester_label), "approver": (approver_id, approver_label)}
    with transaction.atomic():
        ids = _request_ids(template, count, first, start, step)
        requests = list(AccessRequest.objects.filter(pk__in=ids).order_by("created_at", "id"))
        _load_steps_and_decisions(requests, approver_id)
        prev_hash = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or GENESIS_HASH
        with _indexes_dropped(AuditEvent) if bulk else nullcontext():
            _copy(AuditEvent, EVENT_COLUMNS, _event_rows(requests, events_per_request, people, prev_hash))


def analyze() -> None:
    """Fresh planner statistics after a bulk load, as autovacuum would give them."""
    with connection.cursor() as cursor:
        for model in (AccessRequest, ProvisioningStep, Decision, AuditEvent):
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")

