"""Cancel, revoke, retry, expiry, and the lifecycle diagram of DESIGN.md section 3."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from provisioning.steps import table
from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser
from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep, RequestState
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_expire,
    access_request_reject,
    access_request_retry,
    access_request_revoke,
)
from tests.factories import UserFactory

# What a person can make a request do, and from which states (the diagram).
ALLOWED = {
    "approve": {
        RequestState.PENDING_APPROVAL: RequestState.APPROVED,
        RequestState.NEEDS_REAPPROVAL: RequestState.APPROVED,
    },
    "reject": {RequestState.PENDING_APPROVAL: RequestState.REJECTED},
    "cancel": {RequestState.PENDING_APPROVAL: RequestState.CANCELLED},
    "revoke": {
        RequestState.ACTIVE: RequestState.REVOKING,
        RequestState.FAILED: RequestState.REVOKING,
        RequestState.NEEDS_REAPPROVAL: RequestState.REVOKING,
    },
    "retry": {RequestState.FAILED: RequestState.PROVISIONING},
}


def _act(action: str, cast, request):
    if action == "approve":
        return access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    if action == "reject":
        return access_request_reject(request_id=request.pk, user=cast.approver, comment="no")
    service = {"cancel": access_request_cancel, "revoke": access_request_revoke, "retry": access_request_retry}[action]
    return service(request_id=request.pk, user=cast.requester)


@pytest.mark.parametrize("action", list(ALLOWED))
@pytest.mark.parametrize("state", RequestState.values)
def test_only_the_diagrams_transitions_happen(cast, enqueued, state, action):
    request = cast.request(state=state)
    target = ALLOWED[action].get(state)
    if target is None:
        with pytest.raises(InvalidTransition) as refused:
            _act(action, cast, request)
        assert refused.value.status_code == 409
        assert AccessRequest.objects.get(pk=request.pk).state == state
        assert not AuditEvent.objects.filter(action__startswith="request.").exists()
    else:
        assert _act(action, cast, request).state == target
        assert AccessRequest.objects.get(pk=request.pk).state == target


def test_the_requester_cancels_a_pending_request_and_nobody_else_can(cast, enqueued):
    request = cast.request()
    for user in (cast.approver, cast.staff):
        with pytest.raises(NotAllowed):
            access_request_cancel(request_id=request.pk, user=user)
    with pytest.raises(NotFoundForUser):
        access_request_cancel(request_id=request.pk, user=cast.outsider)

    cancelled = access_request_cancel(request_id=request.pk, user=cast.requester, source_ip="192.0.2.4")
    assert cancelled.state == RequestState.CANCELLED
    event = AuditEvent.objects.get(request=request)
    assert (event.action, event.actor_label, event.source_ip) == ("request.cancelled", "dana", "192.0.2.4")
    assert enqueued == []


@pytest.mark.parametrize("who", ["requester", "approver", "staff"])
def test_requester_remote_approver_or_staff_revoke_an_active_grant(
    cast, enqueued, django_capture_on_commit_callbacks, who
):
    request = cast.request(state=RequestState.ACTIVE)
    with django_capture_on_commit_callbacks(execute=True):
        revoked = access_request_revoke(request_id=request.pk, user=getattr(cast, who))
    assert revoked.state == RequestState.REVOKING
    assert enqueued == [(request.pk, "revoke")]
    assert list(request.steps.filter(phase="revoke").values_list("name", flat=True)) == list(table.names("revoke"))
    assert AuditEvent.objects.get(request=request).action == "request.revoke_requested"


def test_nobody_else_revokes(cast, enqueued):
    request = cast.request(state=RequestState.ACTIVE)
    datalake_approver = UserFactory()
    cast.datalake.approvers.add(datalake_approver)
    with pytest.raises(NotAllowed):
        access_request_revoke(request_id=request.pk, user=datalake_approver)
    with pytest.raises(NotFoundForUser):
        access_request_revoke(request_id=request.pk, user=cast.outsider)
    assert AccessRequest.objects.get(pk=request.pk).state == RequestState.ACTIVE
    assert enqueued == []


def _steps(request, phase: str, failed: str) -> None:
    for position, name in enumerate(table.names(phase)):
        status = "succeeded" if table.names(phase).index(failed) > position else "pending"
        if name == failed:
            status = "failed"
        ProvisioningStep.objects.create(request=request, phase=phase, name=name, position=position, status=status)


def test_retry_of_a_failed_grant_reruns_only_the_failed_step(cast, enqueued, django_capture_on_commit_callbacks):
    request = cast.request(state=RequestState.FAILED, diagnosis="principal_not_visible")
    _steps(request, "grant", failed="grant_key_policy")
    with pytest.raises(NotAllowed):
        access_request_retry(request_id=request.pk, user=cast.approver)

    with django_capture_on_commit_callbacks(execute=True):
        retried = access_request_retry(request_id=request.pk, user=cast.staff)
    assert retried.state == RequestState.PROVISIONING
    assert retried.diagnosis == ""
    statuses = dict(request.steps.filter(phase="grant").values_list("name", "status"))
    assert statuses["create_role"] == "succeeded"
    assert statuses["grant_key_policy"] == "pending"
    assert enqueued == [(request.pk, "grant")]
    event = AuditEvent.objects.get(request=request)
    assert (event.action, event.details["phase"], event.details["to_state"]) == ("request.retried", "grant", "provisioning")


def test_retry_after_a_failed_revoke_resumes_the_revoke(cast, enqueued, django_capture_on_commit_callbacks):
    request = cast.request(state=RequestState.FAILED)
    _steps(request, "grant", failed="create_endpoint")
    _steps(request, "revoke", failed="revoke_secret_policy")
    with django_capture_on_commit_callbacks(execute=True):
        retried = access_request_retry(request_id=request.pk, user=cast.requester)
    assert retried.state == RequestState.REVOKING
    assert enqueued == [(request.pk, "revoke")]
    assert request.steps.get(phase="revoke", name="revoke_secret_policy").status == "pending"


def test_an_expired_active_grant_is_revoked_by_the_worker(cast, enqueued, django_capture_on_commit_callbacks):
    now = timezone.now()
    expired = cast.request(state=RequestState.ACTIVE, expires_at=now - timedelta(minutes=1))
    current = cast.request(state=RequestState.ACTIVE, expires_at=now + timedelta(days=1))

    with django_capture_on_commit_callbacks(execute=True):
        revoked = access_request_expire(request_id=expired.pk, now=now)
    assert revoked.state == RequestState.REVOKING
    event = AuditEvent.objects.get(request=expired)
    assert (event.action, event.actor_label, event.actor_id) == ("request.expired", "worker", None)
    assert enqueued == [(expired.pk, "revoke")]
    with pytest.raises(InvalidTransition):
        access_request_expire(request_id=current.pk, now=now)
    assert AccessRequest.objects.get(pk=current.pk).state == RequestState.ACTIVE


def test_a_deactivated_user_can_do_nothing(cast, enqueued):
    request = cast.request()
    cast.requester.is_active = False
    cast.requester.save()
    with pytest.raises(NotFoundForUser):
        access_request_cancel(request_id=request.pk, user=cast.requester)
