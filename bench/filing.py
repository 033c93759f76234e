"""Filing, approving and waiting for requests, through the portal's services."""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction

from bench.context import Bench
from bench.world import ENGINE, Grant
from provisioning.documents import build_plan, plan_hash
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest, RequestState
from requests_app.services import access_request_approve, access_request_submit

DONE_STATES = (RequestState.ACTIVE, RequestState.FAILED)


@dataclass(frozen=True)
class Finished:
    """Where a set of requests stood when the wait ended."""

    active: dict[int, float]  # request id -> completed_at (epoch seconds)
    not_active: list[int]  # failed, or still running when the wait gave up
    ended: float  # when the wait ended (epoch seconds)

    def last_completion(self) -> float:
        """When the last request turned active; when the wait ended, if some never did."""
        if self.not_active or not self.active:
            return self.ended
        return max(self.active.values())


def submit(bench: Bench, grant: Grant) -> AccessRequest:
    """File ``grant`` as the demo requester (runs preflight, as filing does)."""
    request = access_request_submit(
        requester=bench.requester,
        datalake_account_id=bench.datalake_account.account_id,
        secret_arn=grant.target.secret_arn,
        kms_key_arn=grant.target.key_arn,
        engine=ENGINE,
        endpoint_identifier=grant.name,
        role_name=grant.name,
        justification="Benchmark grant.",
    )
    if request.preflight_status != AccessRequest.PreflightStatus.PASSED:
        raise RuntimeError(f"preflight of {grant.name} did not pass: {request.preflight}")
    return request


def file_like(template: AccessRequest, grants: Sequence[Grant]) -> list[AccessRequest]:
    """Requests for ``grants`` awaiting approval, as filing ``template`` left it.

    For a burst of hundreds of requests, running the real filing (preflight
    against AWS, a few hundred milliseconds each) would take minutes nobody
    measures: these rows get the template's preflight report, and the plan
    and hash that filing would compute for their own names and target. The
    workers run preflight again anyway before the first write.
    """
    copied = {
        field.attname: getattr(template, field.attname)
        for field in AccessRequest._meta.concrete_fields
        if field.attname not in ("id", "created_at", "updated_at", "plan", "plan_hash")
    }
    requests = AccessRequest.objects.bulk_create([
        AccessRequest(**{
            **copied,
            "endpoint_identifier": grant.name,
            "role_name": grant.name,
            "secret_arn": grant.target.secret_arn,
            "kms_key_arn": grant.target.key_arn,
            "resolved_kms_key_arn": grant.target.key_arn,
        })
        for grant in grants
    ])
    for request in requests:
        request.plan = build_plan(grant_spec_for(request))
        request.plan_hash = plan_hash(request.plan)
    AccessRequest.objects.bulk_update(requests, ["plan", "plan_hash"])
    return requests


def approve(bench: Bench, request_ids: Iterable[int]) -> None:
    """Approve each request as the demo approver, in one transaction, so the
    workers are told about all of them at the same moment (at the commit)."""
    with transaction.atomic():
        ids = list(request_ids)
        # The approver approves the plan each request shows now.
        hashes = dict(AccessRequest.objects.filter(pk__in=ids).values_list("pk", "plan_hash"))
        for request_id in ids:
            access_request_approve(request_id=request_id, user=bench.approver, plan_hash=hashes[request_id])


def wait_until_done(request_ids: Sequence[int], *, timeout: float, poll: float = 0.05) -> Finished:
    """Wait until every request is active or failed (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    ids = list(request_ids)
    while True:
        done = AccessRequest.objects.filter(pk__in=ids, state__in=DONE_STATES).count()
        if done == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(poll)
    rows = AccessRequest.objects.filter(pk__in=ids).values_list("pk", "state", "completed_at")
    active = {pk: completed.timestamp() for pk, state, completed in rows if state == RequestState.ACTIVE}
    not_active = [pk for pk, state, _ in rows if state != RequestState.ACTIVE]
    return Finished(active=active, not_active=not_active, ended=time.time())
