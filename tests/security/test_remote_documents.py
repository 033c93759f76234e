"""What a request reveals of the Remote account, by role, on the pages, in the API and in exports.

The portal reads the Remote account with its own provisioner role for whoever
files a request. The Remote account's documents (live policies, the diff, what
the Remote steps read and wrote), what preflight read there (the secret's key,
its state, its JSON key names, policy sizes) are for that account's approvers
and administrators. A requester sees preflight outcomes with their
remediation, and the plan with a key they did not name hidden until approval.
"""
from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from requests_app.audit import record_event
from requests_app.models import AccessRequest, ProvisioningStep
from requests_app.visibility import KEY_PLACEHOLDER
from tests.requests_app.page_rows import KEY_ARN, SECRET_ARN, make_request

pytestmark = pytest.mark.django_db

KEY_ID = KEY_ARN.rsplit("/", 1)[-1]
# A statement of the Remote account's own, as the secret and key policies hold it.
FOREIGN_SID = "RemoteOwnersOwnStatement"
FOREIGN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": FOREIGN_SID, "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
                   "Action": "kms:*", "Resource": "*"}],
}
SECRET_KEY_NAME = "replica_admin_marker"
REPORT = {
    "ok": False,
    "diagnosis": "key_not_usable",
    "kms_key_arn": KEY_ARN,
    "secret_keys": ["host", "password", "port", SECRET_KEY_NAME, "username"],
    "checks": [
        {"name": "request_valid", "ok": True, "message": "Every field of the request is valid.", "diagnosis": None},
        {"name": "secret_exists", "ok": True, "message": "Secret prod/source-db/credentials exists.", "diagnosis": None},
        {"name": "customer_managed_key", "ok": True, "message": f"The secret's key {KEY_ARN} is customer-managed.",
         "diagnosis": None},
        {"name": "key_usable", "ok": False, "message": f"The key {KEY_ARN} is PendingDeletion, not Enabled.",
         "diagnosis": "key_not_usable"},
        {"name": "policy_sizes", "ok": True, "message": "After the merge the secret policy is 4711 characters.",
         "diagnosis": None},
    ],
    "lint": [],
    "aws_request_ids": ["req-1"],
}
REMOTE_MARKERS = (FOREIGN_SID, SECRET_KEY_NAME, "PendingDeletion", "4711")
LISTS = ("api audit", "page audit export")  # scoped lists: 200 without the request
ROLES = ("requester", "approver", "staff", "other_approver", "other_requester")
SEES_REMOTE = {"approver", "staff"}
SEES_REQUEST = {"requester", "approver", "staff"}


def _request(people, site, *, state=AccessRequest.State.PENDING_APPROVAL) -> AccessRequest:
    request = make_request(people["requester"], site, state=state, with_steps=state != AccessRequest.State.PENDING_APPROVAL)
    request.preflight = REPORT
    request.preflight_status = AccessRequest.PreflightStatus.FAILED
    request.save(update_fields=["preflight", "preflight_status"])
    if state != AccessRequest.State.PENDING_APPROVAL:
        request.steps.filter(name="preflight").update(after=REPORT, error=f"The key {KEY_ARN} is PendingDeletion.")
        for name in ("grant_secret_policy", "grant_key_policy"):
            request.steps.filter(name=name).update(before=FOREIGN_POLICY, after=FOREIGN_POLICY)
            record_event(
                action=f"aws.{name}", request=request, account=site["remote"], target_arn=SECRET_ARN,
                details={"phase": "grant", "step": name, "before": FOREIGN_POLICY, "after": FOREIGN_POLICY},
            )
        request.steps.filter(name="verify").update(after={"secret_policy": FOREIGN_POLICY, "key_policy": FOREIGN_POLICY})
    return request


def _client(people, role) -> Client:
    client = Client()
    client.force_login(people[role])
    return client


def _texts(client: Client, request: AccessRequest) -> dict[str, tuple[int, str]]:
    """Everything a person can read about ``request``: status and body of each place."""
    places = {
        "api detail": f"/api/v1/requests/{request.pk}/",
        "api plan": f"/api/v1/requests/{request.pk}/plan/",
        "api export json": f"/api/v1/requests/{request.pk}/export/?format=json",
        "api export cli": f"/api/v1/requests/{request.pk}/export/?format=cli",
        "api audit": f"/api/v1/audit-events/?request={request.pk}",
        "page": reverse("web:request_detail", args=[request.pk]),
        "page live": reverse("web:request_live", args=[request.pk]),
        "page export": reverse("web:request_export", args=[request.pk, "cloudformation"]),
        "page audit export": reverse("web:audit_export", args=["jsonl"]) + f"?request={request.pk}",
    }
    found = {}
    for name, path in places.items():
        response = client.get(path)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        found[name] = (response.status_code, body.decode())
    return found


@pytest.mark.parametrize("role", ROLES)
def test_before_approval_only_the_remote_approvers_and_admins_see_what_preflight_read(role, people, site):
    request = _request(people, site)
    texts = _texts(_client(people, role), request)
    for place, (status, body) in texts.items():
        if role not in SEES_REQUEST:
            assert status == (200 if place in LISTS else 404), place
            assert KEY_ID not in body and FOREIGN_SID not in body, place
            continue
        assert status == 200, (place, status)
        if role in SEES_REMOTE:
            if place in ("api detail", "page"):
                assert KEY_ARN in body and SECRET_KEY_NAME in body and "PendingDeletion" in body, place
        else:
            assert KEY_ID not in body, place
            for marker in REMOTE_MARKERS:
                assert marker not in body, (place, marker)
    if role == "requester":
        assert KEY_PLACEHOLDER in texts["api plan"][1]
        assert KEY_PLACEHOLDER in texts["page"][1]


def test_the_requester_sees_each_check_passed_or_failed_with_its_remediation(people, site):
    from provisioning.diagnoses import get_diagnosis

    request = _request(people, site)
    preflight = _client(people, "requester").get(f"/api/v1/requests/{request.pk}/").json()["preflight"]
    assert [(c["name"], c["ok"]) for c in preflight["checks"]] == [(c["name"], c["ok"]) for c in REPORT["checks"]]
    failed = next(c for c in preflight["checks"] if not c["ok"])
    diagnosis = get_diagnosis("key_not_usable")
    assert failed["message"] == diagnosis.title and failed["remediation"] == diagnosis.remediation
    assert preflight["diagnosis"] == "key_not_usable"
    assert preflight["kms_key_arn"] is None and preflight["secret_keys"] is None
    # The requester's own side keeps its words.
    assert preflight["checks"][0]["message"] == REPORT["checks"][0]["message"]
    page = _client(people, "requester").get(reverse("web:request_detail", args=[request.pk])).content.decode()
    assert diagnosis.remediation.split(".")[0] in page


def test_a_key_the_requester_named_is_theirs_to_see(people, site):
    request = _request(people, site)
    request.kms_key_arn = KEY_ARN
    request.save(update_fields=["kms_key_arn"])
    body = _client(people, "requester").get(f"/api/v1/requests/{request.pk}/plan/").content.decode()
    assert KEY_ARN in body and KEY_PLACEHOLDER not in body


@pytest.mark.parametrize("role", ROLES)
def test_after_approval_the_remote_documents_stay_with_the_remote_approvers(role, people, site):
    request = _request(people, site, state=AccessRequest.State.ACTIVE)
    client = _client(people, role)
    texts = _texts(client, request)
    if role not in SEES_REQUEST:
        assert all(status == 404 for place, (status, _) in texts.items() if place not in LISTS)
        assert not any(FOREIGN_SID in body or KEY_ID in body for _, body in texts.values())
        return
    detail = client.get(f"/api/v1/requests/{request.pk}/").json()
    steps = {step["name"]: step for step in detail["steps"]}
    remote_steps = ("grant_secret_policy", "grant_key_policy", "verify")
    audit = client.get(f"/api/v1/audit-events/?request={request.pk}").json()["results"]
    audit_documents = [e["details"].get("before") for e in audit if e["action"].startswith("aws.grant_")]
    assert len(audit_documents) == 2
    if role in SEES_REMOTE:
        assert all(steps[name]["after"] == (FOREIGN_POLICY if name != "verify" else steps[name]["after"])
                   for name in remote_steps)
        assert steps["grant_secret_policy"]["before"] == FOREIGN_POLICY
        assert audit_documents == [FOREIGN_POLICY, FOREIGN_POLICY]
        assert SECRET_KEY_NAME in json.dumps(detail)
    else:
        assert all(steps[name]["before"] is None and steps[name]["after"] is None for name in remote_steps)
        assert audit_documents == [None, None]
        # Once approved the key is no secret to the requester (the DataLake role names it).
        assert detail["resolved_kms_key_arn"] == KEY_ARN
        assert "PendingDeletion" not in steps["preflight"]["error"]
        for place, (status, body) in texts.items():
            assert status == 200, place
            for marker in REMOTE_MARKERS:
                assert marker not in body, (place, marker)


@pytest.mark.parametrize("role, status", [("requester", 403), ("approver", 200), ("staff", 200),
                                          ("other_approver", 404), ("other_requester", 404)])
def test_the_live_policies_are_read_only_for_the_remote_approvers(role, status, people, site, monkeypatch):
    request = _request(people, site)
    reads = []

    def read_live_policies(access_request, *, kinds=("secret", "key")):
        reads.append(access_request.pk)
        return {"secret": FOREIGN_POLICY, "key": FOREIGN_POLICY}

    monkeypatch.setattr("requests_app.web.policy_diff.read_live_policies", read_live_policies)
    response = _client(people, role).get(reverse("web:request_policies", args=[request.pk]))
    assert response.status_code == status
    assert (FOREIGN_SID in response.content.decode()) is (status == 200)
    assert reads == ([request.pk] if status == 200 else [])
    page = _client(people, role).get(reverse("web:request_detail", args=[request.pk])).content.decode()
    assert (reverse("web:request_policies", args=[request.pk]) in page) is (status == 200)


def test_a_live_export_is_refused_to_the_requester(people, site):
    from requests_app.errors import NotAllowed
    from requests_app.export import grant_export_for

    request = _request(people, site)
    with pytest.raises(NotAllowed):
        grant_export_for(user=people["requester"], request_id=request.pk, fmt="json", live=True)


EDITED = {"Sid": "DmsAccessPortal1", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
          "Action": "secretsmanager:GetSecretValue", "Resource": "*", "Condition": {"StringEquals": {FOREIGN_SID: "x"}}}


@pytest.mark.parametrize("role", ["requester", "approver", "staff"])
def test_drift_findings_keep_the_remote_policy_as_it_is_now_from_the_requester(role, people, site):
    request = _request(people, site, state=AccessRequest.State.ACTIVE)
    finding = {"kind": "secret_statement_changed", "resource": SECRET_ARN, "message": "The statement was edited.",
               "expected": {"Sid": "DmsAccessPortal1"}, "actual": EDITED}
    role_finding = {"kind": "role_missing", "resource": "arn:aws:iam::111111111111:role/r", "message": "gone",
                    "expected": None, "actual": {"RoleName": "r"}}
    request.drift = {"drifted": True, "kinds": ["secret_statement_changed", "role_missing"],
                     "findings": [finding, role_finding]}
    request.save(update_fields=["drift"])
    record_event(action="grant.drift_detected", request=request, details={"findings": [finding, role_finding]})
    client = _client(people, role)

    drift = client.get(f"/api/v1/requests/{request.pk}/").json()["drift"]
    audit = client.get(f"/api/v1/audit-events/?request={request.pk}").json()["results"]
    [event] = [e for e in audit if e["action"] == "grant.drift_detected"]
    export = b"".join(client.get(reverse("web:audit_export", args=["jsonl"]) + f"?request={request.pk}")
                      .streaming_content).decode()

    for findings in (drift["findings"], event["details"]["findings"]):
        assert findings[1]["actual"] == {"RoleName": "r"}  # the DataLake side is the requester's own
        assert findings[0]["message"] == "The statement was edited."
        assert ("actual" in findings[0]) is (role in SEES_REMOTE)
    assert (FOREIGN_SID in export) is (role in SEES_REMOTE)


def test_the_failure_mail_tells_the_requester_only_the_outcome(people, site, mailoutbox):
    from requests_app import notifications

    request = _request(people, site, state=AccessRequest.State.FAILED)
    request.steps.filter(name="preflight").update(status=ProvisioningStep.Status.FAILED, diagnosis="key_not_usable")
    request.diagnosis = "key_not_usable"
    request.save(update_fields=["diagnosis"])
    people["requester"].email = "dana@example.test"
    people["requester"].save(update_fields=["email"])

    notifications.notify_finished(request)

    [mail] = mailoutbox
    assert "preflight" in mail.body and "PendingDeletion" not in mail.body
