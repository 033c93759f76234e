"""POST /api/v1/requests/{id}/approve|reject|cancel|revoke|retry/: who may, and when."""
from __future__ import annotations

import pytest

from requests_app.models import AccessRequest, AuditEvent, ProvisioningStep
from requests_app.validation import COMMENT_MAX, COMMENT_TOO_LONG

URL = "/api/v1/requests/"


def _post(client, request_id: int, action: str, body: dict | None = None):
    return client.post(f"{URL}{request_id}/{action}/", body or {}, format="json")


def _approve(client, filed: dict, body: dict | None = None):
    """Approve with the plan hash the approver read from the request."""
    return _post(client, filed["id"], "approve", {"plan_hash": filed["plan_hash"], **(body or {})})


def _state(request_id: int) -> str:
    return AccessRequest.objects.get(pk=request_id).state


class TestApprove:
    def test_the_remote_approver_approves_the_current_plan(self, filed, client_for):
        response = _approve(client_for("avery"), filed, {"comment": "Looks right."})

        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["state"] == "approved"
        assert body["decisions"] == [
            {
                "approver": "avery",
                "outcome": "approve",
                "comment": "Looks right.",
                "plan_hash": filed["plan_hash"],
                "counts": True,
                "created_at": body["decisions"][0]["created_at"],
            }
        ]
        # Provisioning is scheduled with the transition: its steps exist, pending.
        assert [step["name"] for step in body["steps"]][:2] == ["preflight", "create_role"]
        assert AuditEvent.objects.filter(request_id=filed["id"], actor_label="avery").exists()

    def test_nobody_approves_their_own_request_not_even_staff(self, portal, accounts, people, client_for, submit_body):
        accounts["datalake"].requesters.add(people["sam"])
        accounts["remote"].approvers.add(people["sam"])
        own = client_for("sam").post(URL, submit_body, format="json").json()

        response = _approve(client_for("sam"), own)

        assert response.status_code == 403
        assert _state(own["id"]) == "pending_approval"

    def test_the_requester_may_not_approve(self, filed, client_for):
        assert _approve(client_for("riley"), filed).status_code == 403
        assert _state(filed["id"]) == "pending_approval"

    def test_an_approver_of_the_other_account_sees_it_but_may_not_approve(self, filed, client_for):
        response = _approve(client_for("dana"), filed)

        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert _state(filed["id"]) == "pending_approval"

    def test_someone_who_may_not_see_it_gets_404(self, filed, client_for):
        assert _approve(client_for("olive"), filed).status_code == 404
        assert _state(filed["id"]) == "pending_approval"

    def test_anonymous_gets_401(self, filed, client_for):
        assert _approve(client_for(None), filed).status_code == 401

    def test_approving_twice_is_a_conflict(self, filed, client_for):
        _approve(client_for("avery"), filed)

        response = _approve(client_for("avery"), filed)

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_transition"

    def test_a_request_whose_preflight_failed_cannot_be_approved(self, portal, client_for, submit_body):
        failed = client_for("riley").post(URL, {**submit_body, "secret_arn": portal.managed_secret_arn}, format="json")

        response = _approve(client_for("avery"), failed.json())

        assert response.status_code == 403
        assert "preflight" in response.json()["detail"].lower()
        assert _state(failed.json()["id"]) == "pending_approval"


class TestPlanHash:
    def test_the_plan_hash_is_required(self, filed, client_for):
        response = _post(client_for("avery"), filed["id"], "approve", {"comment": "fine"})

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["plan_hash"]
        assert _state(filed["id"]) == "pending_approval"

    @pytest.mark.parametrize("seen", ["0" * 64, "", "abc"])
    def test_another_plans_hash_is_a_409_naming_the_current_plan_and_decides_nothing(self, filed, client_for, seen):
        response = _post(client_for("avery"), filed["id"], "approve", {"plan_hash": seen})

        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "plan_changed"
        assert body["current_plan_hash"] == filed["plan_hash"]
        assert "plan changed" in body["detail"]
        assert _state(filed["id"]) == "pending_approval"
        assert not AuditEvent.objects.filter(request_id=filed["id"], action="decision.approve").exists()

    def test_a_plan_changed_after_it_was_read_is_refused(self, filed, client_for):
        AccessRequest.objects.filter(pk=filed["id"]).update(plan_hash="c" * 64)

        response = _approve(client_for("avery"), filed)

        assert response.status_code == 409 and response.json()["current_plan_hash"] == "c" * 64
        assert _state(filed["id"]) == "pending_approval"


class TestCommentLimit:
    @pytest.mark.parametrize("action", ["approve", "reject"])
    def test_an_over_long_comment_is_refused_with_the_shared_message(self, filed, client_for, action):
        body = {"plan_hash": filed["plan_hash"], "comment": "x" * (COMMENT_MAX + 1)}

        response = _post(client_for("avery"), filed["id"], action, body)

        assert response.status_code == 400
        assert response.json()["errors"] == {"comment": [COMMENT_TOO_LONG]}
        assert _state(filed["id"]) == "pending_approval"
        assert not AuditEvent.objects.filter(request_id=filed["id"], action__startswith="decision.").exists()


class TestReject:
    def test_a_comment_is_required(self, filed, client_for):
        for body in ({}, {"comment": ""}, {"comment": None}, {"comment": "   "}):
            response = _post(client_for("avery"), filed["id"], "reject", body)
            assert response.status_code == 400, body
            assert "comment" in response.json()["errors"]
        assert _state(filed["id"]) == "pending_approval"

    def test_the_approver_rejects_with_a_reason(self, filed, client_for):
        response = _post(client_for("avery"), filed["id"], "reject", {"comment": "Use the read replica."})

        assert response.status_code == 200
        assert response.json()["state"] == "rejected"
        assert response.json()["decisions"][0]["comment"] == "Use the read replica."

    def test_the_requester_may_not_reject(self, filed, client_for):
        assert _post(client_for("riley"), filed["id"], "reject", {"comment": "no"}).status_code == 403

    def test_a_rejected_request_cannot_be_approved_any_more(self, filed, client_for):
        _post(client_for("avery"), filed["id"], "reject", {"comment": "No."})

        assert _approve(client_for("avery"), filed).status_code == 409


class TestCancel:
    def test_the_requester_cancels_a_pending_request(self, filed, client_for):
        response = _post(client_for("riley"), filed["id"], "cancel")

        assert response.status_code == 200
        assert response.json()["state"] == "cancelled"
        assert response.json()["allowed_actions"] == []

    @pytest.mark.parametrize("name", ["avery", "dana", "sam"])
    def test_only_the_requester_cancels(self, filed, client_for, name):
        assert _post(client_for(name), filed["id"], "cancel").status_code == 403
        assert _state(filed["id"]) == "pending_approval"

    def test_an_approved_request_can_no_longer_be_cancelled(self, filed, client_for):
        _approve(client_for("avery"), filed)

        assert _post(client_for("riley"), filed["id"], "cancel").status_code == 409


def _force_state(request_id: int, state: str, *, failed_step: str | None = None) -> None:
    # The workers move requests through provisioning; these tests start from
    # where a worker would have left the request.
    AccessRequest.objects.filter(pk=request_id).update(state=state)
    if failed_step:
        ProvisioningStep.objects.filter(request_id=request_id, name=failed_step).update(
            status=ProvisioningStep.Status.FAILED, diagnosis="key_policy_denies", error="AccessDenied"
        )


class TestRevoke:
    @pytest.mark.parametrize("name", ["riley", "avery", "sam"])
    def test_requester_remote_approver_or_staff_revoke_an_active_grant(self, filed, client_for, name):
        _approve(client_for("avery"), filed)
        _force_state(filed["id"], "active")

        response = _post(client_for(name), filed["id"], "revoke")

        assert response.status_code == 200, response.json()
        assert response.json()["state"] == "revoking"
        revoke_steps = [step["name"] for step in response.json()["steps"] if step["phase"] == "revoke"]
        assert revoke_steps == ["delete_endpoint", "revoke_key_policy", "revoke_secret_policy", "delete_role"]

    def test_the_datalake_approver_may_not_revoke(self, filed, client_for):
        _approve(client_for("avery"), filed)
        _force_state(filed["id"], "active")

        assert _post(client_for("dana"), filed["id"], "revoke").status_code == 403
        assert _state(filed["id"]) == "active"

    def test_a_pending_request_is_cancelled_not_revoked(self, filed, client_for):
        assert _post(client_for("riley"), filed["id"], "revoke").status_code == 409


class TestRetry:
    def test_the_requester_retries_a_failed_grant(self, filed, client_for):
        _approve(client_for("avery"), filed)
        _force_state(filed["id"], "failed", failed_step="grant_key_policy")

        response = _post(client_for("riley"), filed["id"], "retry")

        assert response.status_code == 200, response.json()
        assert response.json()["state"] == "provisioning"
        step = next(s for s in response.json()["steps"] if s["name"] == "grant_key_policy")
        assert step["status"] == "pending"

    def test_an_approver_may_not_retry(self, filed, client_for):
        _approve(client_for("avery"), filed)
        _force_state(filed["id"], "failed", failed_step="grant_key_policy")

        assert _post(client_for("avery"), filed["id"], "retry").status_code == 403
        assert _state(filed["id"]) == "failed"

    def test_only_a_failed_request_is_retried(self, filed, client_for):
        assert _post(client_for("riley"), filed["id"], "retry").status_code == 409
