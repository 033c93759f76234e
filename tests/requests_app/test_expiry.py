"""Expiry without AWS: the reminder before it, and extensions decided by the approvers."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from requests_app.workflow import tasks
from requests_app.audit import verify_chain
from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser, PlanChanged, ValidationFailed
from requests_app.models import AccessRequest, AuditEvent, ExpiryExtension, RequestState
from requests_app.permissions import lifecycle_actions
from requests_app.services import (
    access_request_extend,
    access_request_extension_approve,
    access_request_extension_reject,
    remind_expiring_grants,
)
from requests_app.workflow.sweeper import expire_due_grants

pytestmark = pytest.mark.django_db


def _active(cast, *, expires_in=timedelta(days=2), **fields):
    return cast.request(state=RequestState.ACTIVE, expires_at=timezone.now() + expires_in, **fields)


def _actions(request):
    return list(AuditEvent.objects.filter(request=request).order_by("id").values_list("action", flat=True))


# --- reminder ------------------------------------------------------------------


def test_the_requester_is_reminded_once_before_expiry(cast, settings, django_capture_on_commit_callbacks):
    settings.EXPIRY_REMINDER_BEFORE = timedelta(days=3)
    soon = _active(cast, expires_in=timedelta(days=2))
    later = _active(cast, expires_in=timedelta(days=5))
    forever = cast.request(state=RequestState.ACTIVE)
    pending = cast.request(expires_at=timezone.now() + timedelta(days=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.remind_expiring() == 1
    assert [m.to for m in mail.outbox] == [[cast.requester.email]]
    assert mail.outbox[0].subject == f"[DMS Access Portal] #{soon.pk} expires soon"
    assert AccessRequest.objects.get(pk=soon.pk).reminded_at is not None
    assert _actions(soon) == ["request.expiry_reminder_sent"]
    for untouched in (later, forever, pending):
        assert AccessRequest.objects.get(pk=untouched.pk).reminded_at is None

    with django_capture_on_commit_callbacks(execute=True):
        assert remind_expiring_grants() == []
    assert len(mail.outbox) == 1


def test_an_approved_extension_gets_its_own_reminder(cast, settings, django_capture_on_commit_callbacks):
    settings.EXPIRY_REMINDER_BEFORE = timedelta(days=3)
    request = _active(cast, expires_in=timedelta(days=2))
    assert remind_expiring_grants() == [request.pk]
    access_request_extend(request_id=request.pk, user=cast.requester, expires_at=request.expires_at + timedelta(days=30))
    access_request_extension_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert AccessRequest.objects.get(pk=request.pk).reminded_at is None
    assert remind_expiring_grants() == []  # 32 days left now
    assert remind_expiring_grants(now=timezone.now() + timedelta(days=30)) == [request.pk]


# --- extension -------------------------------------------------------------------


def test_an_extension_moves_only_the_expiry_once_approved(cast, django_capture_on_commit_callbacks):
    request = _active(cast)
    plan, plan_hash, old_expiry = request.plan, request.plan_hash, request.expires_at
    new_expiry = old_expiry + timedelta(days=30)

    with django_capture_on_commit_callbacks(execute=True):
        access_request_extend(request_id=request.pk, user=cast.requester, expires_at=new_expiry,
                              justification="Migration runs another month.", source_ip="10.1.1.1")
    extension = ExpiryExtension.objects.get(request=request)
    assert (extension.state, extension.previous_expires_at, extension.expires_at) == ("pending", old_expiry, new_expiry)
    assert AccessRequest.objects.get(pk=request.pk).expires_at == old_expiry
    assert sorted(mail.outbox[0].to) == sorted([cast.approver.email, cast.second_approver.email])
    assert lifecycle_actions(cast.approver, request, pending_extension=extension) >= {"decide_extension"}
    assert "extend" not in lifecycle_actions(cast.requester, request, pending_extension=extension)

    with django_capture_on_commit_callbacks(execute=True):
        access_request_extension_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver, comment="ok")
    request = AccessRequest.objects.get(pk=request.pk)
    assert request.expires_at == new_expiry
    assert (request.plan, request.plan_hash, request.state) == (plan, plan_hash, RequestState.ACTIVE)
    assert ExpiryExtension.objects.get(pk=extension.pk).state == "approved"
    assert mail.outbox[-1].to == [cast.requester.email]
    assert "was extended" in mail.outbox[-1].subject
    assert _actions(request) == ["extension.requested", "decision.extension_approve", "request.expiry_extended"]
    event = AuditEvent.objects.get(request=request, action="extension.requested")
    assert (event.actor_label, event.source_ip) == ("dana", "10.1.1.1")
    assert verify_chain().ok


def test_an_account_needing_two_approvals_needs_two_for_an_extension(cast):
    cast.remote.required_approvals = 2
    cast.remote.save()
    request = _active(cast)
    new_expiry = request.expires_at + timedelta(days=7)
    access_request_extend(request_id=request.pk, user=cast.requester, expires_at=new_expiry)
    access_request_extension_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert AccessRequest.objects.get(pk=request.pk).expires_at != new_expiry
    with pytest.raises(InvalidTransition):
        access_request_extension_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    access_request_extension_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.second_approver)
    assert AccessRequest.objects.get(pk=request.pk).expires_at == new_expiry


def test_a_rejected_extension_leaves_the_expiry_and_needs_a_comment(cast):
    request = _active(cast)
    access_request_extend(request_id=request.pk, user=cast.requester, expires_at=request.expires_at + timedelta(days=7))
    with pytest.raises(ValidationFailed) as refused:
        access_request_extension_reject(request_id=request.pk, user=cast.approver, comment="  ")
    assert "comment" in refused.value.errors
    access_request_extension_reject(request_id=request.pk, user=cast.approver, comment="Finish by Friday.")
    assert AccessRequest.objects.get(pk=request.pk).expires_at == request.expires_at
    assert ExpiryExtension.objects.get(request=request).state == "rejected"
    # A new one may be asked for afterwards.
    access_request_extend(request_id=request.pk, user=cast.requester, expires_at=request.expires_at + timedelta(days=2))


def test_who_may_ask_and_who_may_decide(cast):
    request = _active(cast)
    later = request.expires_at + timedelta(days=7)
    for user in (cast.approver, cast.staff):
        with pytest.raises(NotAllowed):
            access_request_extend(request_id=request.pk, user=user, expires_at=later)
    with pytest.raises(NotFoundForUser):
        access_request_extend(request_id=request.pk, user=cast.outsider, expires_at=later)
    access_request_extend(request_id=request.pk, user=cast.requester, expires_at=later)
    with pytest.raises(NotAllowed):
        access_request_extension_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.requester)
    with pytest.raises(NotAllowed):
        access_request_extension_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.staff)
    with pytest.raises(InvalidTransition):
        access_request_extend(request_id=request.pk, user=cast.requester, expires_at=later + timedelta(days=1))


@pytest.mark.parametrize(
    "expires_at, field_message",
    [
        (lambda r: r.expires_at - timedelta(hours=1), "later than the grant's current expiry"),
        (lambda r: timezone.now() - timedelta(hours=1), "future"),
        (lambda r: "next week", "date and time"),
    ],
)
def test_an_extension_must_move_the_expiry_later(cast, expires_at, field_message):
    request = _active(cast)
    with pytest.raises(ValidationFailed) as refused:
        access_request_extend(request_id=request.pk, user=cast.requester, expires_at=expires_at(request))
    assert field_message in " ".join(refused.value.errors["expires_at"])
    assert not ExpiryExtension.objects.exists()


@pytest.mark.parametrize("state", [s for s in RequestState.values if s != RequestState.ACTIVE])
def test_only_an_active_grant_is_extended(cast, state):
    request = cast.request(state=state, expires_at=timezone.now() + timedelta(days=1))
    with pytest.raises(InvalidTransition):
        access_request_extend(request_id=request.pk, user=cast.requester, expires_at=timezone.now() + timedelta(days=9))


def test_a_grant_without_expiry_has_nothing_to_extend(cast):
    request = cast.request(state=RequestState.ACTIVE)
    assert "extend" not in lifecycle_actions(cast.requester, request)
    with pytest.raises(InvalidTransition):
        access_request_extend(request_id=request.pk, user=cast.requester, expires_at=timezone.now() + timedelta(days=9))


def test_an_extension_still_pending_when_the_grant_expires_can_no_longer_be_approved(cast, enqueued):
    request = _active(cast, expires_in=timedelta(minutes=5))
    access_request_extend(request_id=request.pk, user=cast.requester, expires_at=request.expires_at + timedelta(days=7))
    expire_due_grants(now=timezone.now() + timedelta(minutes=10))
    with pytest.raises(InvalidTransition):
        access_request_extension_approve(request_id=request.pk, plan_hash=request.plan_hash, user=cast.approver)
    assert AccessRequest.objects.get(pk=request.pk).state == RequestState.REVOKING


def test_an_extension_approval_names_the_plan_that_was_seen(cast):
    request = _active(cast)
    access_request_extend(request_id=request.pk, user=cast.requester, expires_at=request.expires_at + timedelta(days=30))

    with pytest.raises(PlanChanged) as refused:
        access_request_extension_approve(request_id=request.pk, plan_hash="0" * 64, user=cast.approver)

    assert refused.value.current_plan_hash == request.plan_hash
    extension = ExpiryExtension.objects.get(request=request)
    assert extension.state == ExpiryExtension.State.PENDING and not extension.approved_by.exists()
    assert "decision.extension_approve" not in _actions(request)
