"""Whole journeys in a real browser, against real workers and a moto server.

The requester files the runbook's request in the form, the approver approves
it from the queue, and the requester's page, never reloaded, follows the
steps to done and the request to active. Also: a rejection with a comment,
and a secret under the AWS-managed key diagnosed before anyone approves.
"""
import re

import pytest

from provisioning.steps import table
from requests_app.models import AccessRequest, ProvisioningStep
from tests.requests_app.rows import DATALAKE_ID

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = 60_000  # ms: generous ceilings for a busy CI machine, not timing assertions
GRANT_STEPS = table.names(ProvisioningStep.Phase.GRANT)

# Every swap of the live part leaves a note of what the page showed then.
WATCH_SWAPS = """
window.__sameDocument = true;
window.__seen = [];
document.body.addEventListener("htmx:afterSettle", () => {
  const summary = document.querySelector("#live-summary");
  const steps = [...document.querySelectorAll("[data-step]")].map(e => e.dataset.step + ":" + e.dataset.status);
  window.__seen.push({state: summary && summary.dataset.state, steps: steps});
});
"""


def file_request(page, *, secret_arn: str, endpoint_identifier: str, replication_instance_arn: str = "") -> int:
    page.goto("/requests/new/")
    page.select_option("#id_datalake_account", DATALAKE_ID)
    page.fill("#id_secret_arn", secret_arn)
    page.select_option("#id_engine", "mysql")
    page.fill("#id_endpoint_identifier", endpoint_identifier)
    if replication_instance_arn:
        page.fill("#id_replication_instance_arn", replication_instance_arn)
    page.fill("#id_justification", "Nightly replication of the orders database into the lake.")
    page.click("button:has-text('File the request')")
    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    return int(re.search(r"/requests/(\d+)/$", page.url).group(1))


def test_filed_in_the_form_approved_in_the_queue_and_followed_live_to_active(
    people, portal_aws, moto_world, workers, faults, log_in, screenshot, docs_screenshot
):
    requester = log_in("dana.requester")
    request_id = file_request(
        requester,
        secret_arn=moto_world.secret_arn,
        endpoint_identifier="orders-mysql-journey",
        replication_instance_arn=moto_world.replication_instance_arn,
    )
    assert requester.locator(".badge.preflight-passed").is_visible()
    assert requester.locator("#request-state").inner_text() == "Pending approval"
    # Hold the role step for a moment after it ran, so the page has a
    # provisioning state to show between "approved" and "active".
    faults.set(request_id, create_role={"sleep_after": 3})
    requester.evaluate(WATCH_SWAPS)

    approver = log_in("omar.approver")
    approver.goto("/approvals/")
    row = approver.locator(f"tr[data-request='{request_id}']")
    assert "orders-mysql-journey" in row.inner_text() and "Passed" in row.inner_text()
    # The row shows what an approval lets the portal add, and to which secret and key.
    request = AccessRequest.objects.get(pk=request_id)
    assert row.locator("[data-plan-hash]").get_attribute("data-plan-hash") == request.plan_hash
    assert request.plan["secret_policy_statement"]["Sid"] in row.locator("pre[data-statement=secret]").inner_text()
    assert request.plan["key_policy_statement"]["Sid"] in row.locator("pre[data-statement=key]").inner_text()
    screenshot(approver, "approval-queue")
    docs_screenshot(approver, "approval-queue", "main", max_height=1100)
    row.locator("input[name=comment]").fill("Matches the runbook; go ahead.")
    row.locator("button:has-text('Approve')").click()
    approver.wait_for_selector(".messages .success")
    assert approver.locator(f"tr[data-request='{request_id}']").count() == 0

    # The requester's page, still the same document, follows the grant.
    requester.wait_for_selector("[data-step=create_role][data-status=running]", timeout=SLOW)
    screenshot(requester, "request-detail-provisioning")
    docs_screenshot(requester, "live-progress", "#live-diagram", "#live-steps", max_height=1000)
    requester.wait_for_selector("#live-summary[data-state=active]", timeout=SLOW)
    assert requester.evaluate("window.__sameDocument") is True
    statuses = dict(s.split(":") for s in requester.locator("[data-step]").evaluate_all("els => els.map(e => e.dataset.step + ':' + e.dataset.status)"))
    assert statuses == {name: "succeeded" for name in GRANT_STEPS}
    seen = requester.evaluate("window.__seen")
    assert any("create_role:running" in snapshot["steps"] for snapshot in seen)
    assert seen[-1]["state"] == "active"
    for node in ("endpoint", "role", "secret", "key"):
        assert requester.locator(f"[data-node={node}]").get_attribute("data-status") == "succeeded"

    # The Remote account's policies are its approvers' to read, not the requester's.
    assert requester.locator("#policies").count() == 0
    assert "AuditorsMayDescribe" not in requester.content()
    assert "Matches the runbook; go ahead." in requester.locator("#live-history").inner_text()
    screenshot(requester, "request-detail-active")
    # The approver's page shows the diff as the workers recorded it.
    approver.goto(f"/requests/{request_id}/")
    approver.wait_for_selector("#policies .policy-diff[data-policy=secret] pre.diff", timeout=SLOW)
    secret_diff = approver.locator("#policies .policy-diff[data-policy=secret]").inner_text()
    assert "right before writing" in secret_diff
    assert "AuditorsMayDescribe" in secret_diff  # the foreign statement, kept
    assert approver.locator("#policies .policy-diff[data-policy=secret] .add").count() > 0
    approver.goto(f"/audit/?request={request_id}")
    trail = approver.locator("table").first.inner_text()
    for action in ("request.submitted", "request.approved", "aws.grant_secret_policy", "request.active"):
        assert action in trail
    docs_screenshot(approver, "audit-log", "main", max_height=900)

    request = AccessRequest.objects.get(pk=request_id)
    assert request.state == AccessRequest.State.ACTIVE
    assert any(s.get("Principal", {}).get("AWS") == request.role_arn for s in moto_world.secret_policy()["Statement"])

    # Revoking runs the steps backwards; the page follows them to the end.
    requester.click("button[value=revoke]")
    requester.wait_for_selector("#live-summary[data-state=revoked]", timeout=SLOW)
    for node in ("endpoint", "role", "secret", "key"):
        assert requester.locator(f"[data-node={node}]").get_attribute("data-status") == "removed"
    assert requester.locator("button[value=revoke]").count() == 0
    assert moto_world.role(request.role_name) is None
    assert "AuditorsMayDescribe" in str(moto_world.secret_policy())
    assert request.role_arn not in str(moto_world.secret_policy())


def test_a_rejection_needs_a_comment_and_the_requester_reads_it(people, portal_aws, moto_world, log_in):
    requester = log_in("dana.requester")
    request_id = file_request(requester, secret_arn=moto_world.secret_arn, endpoint_identifier="orders-mysql-rejected")
    requester.evaluate(WATCH_SWAPS)

    approver = log_in("omar.approver")
    approver.goto(f"/requests/{request_id}/")
    approver.click("button[value=reject]")  # no comment
    error = approver.locator(".messages .error").inner_text()
    assert "comment" in error.lower()
    assert approver.locator("#request-state").inner_text() == "Pending approval"

    approver.fill("#live-summary input[name=comment][aria-label='Rejection comment']", "Use the read replica's secret, not the primary's.")
    approver.click("button[value=reject]")
    approver.wait_for_selector("#live-summary[data-state=rejected]")
    assert not approver.locator("#live-summary button").count()  # nothing left to do

    # The requester's open page notices the decision by itself.
    requester.wait_for_selector("#live-summary[data-state=rejected]", timeout=SLOW)
    assert requester.evaluate("window.__sameDocument") is True
    assert "Use the read replica's secret, not the primary's." in requester.locator("#live-history").inner_text()
    assert requester.locator("#live-summary button").count() == 0


def test_a_secret_under_the_aws_managed_key_is_diagnosed_with_its_remediation(
    people, portal_aws, managed_secret_arn, log_in, screenshot
):
    from provisioning.diagnoses import DIAGNOSES

    requester = log_in("dana.requester")
    request_id = file_request(requester, secret_arn=managed_secret_arn, endpoint_identifier="legacy-mysql")
    diagnosis = requester.locator("#request-diagnosis")
    assert diagnosis.is_visible()
    assert "aws_managed_key" in diagnosis.inner_text()
    assert DIAGNOSES["aws_managed_key"].remediation in diagnosis.inner_text()
    assert requester.locator(".badge.preflight-failed").is_visible()
    assert requester.locator("[data-node=key]").get_attribute("data-status") == "failed"
    screenshot(requester, "request-detail-aws-managed-key")

    # The approver is not offered an approval that could only fail.
    approver = log_in("omar.approver")
    approver.goto(f"/requests/{request_id}/")
    assert approver.locator("button[value=approve]").count() == 0
    assert approver.locator("button[value=reject]").count() == 1
    approver.goto("/approvals/")
    row = approver.locator(f"tr[data-request='{request_id}']")
    assert "Failed" in row.inner_text() and "aws_managed_key" in row.inner_text()
    assert row.locator("button:has-text('Approve')").count() == 0


def test_the_form_checks_each_field_as_it_is_filled_in(people, log_in):
    from requests_app.errors import ValidationFailed
    from requests_app.validation import validate_request_input

    page = log_in("dana.requester")
    page.goto("/requests/new/")
    page.fill("#id_endpoint_identifier", "9-lives--")
    page.locator("#id_endpoint_identifier").blur()
    message = page.locator("#errors_endpoint_identifier p").first
    message.wait_for()
    with pytest.raises(ValidationFailed) as expected:
        validate_request_input(datalake_account_id=DATALAKE_ID, secret_arn="", engine="mysql",
                               endpoint_identifier="9-lives--", justification="")
    assert message.inner_text() == expected.value.errors["endpoint_identifier"][0]
    # Only the field that changed speaks up; the untouched ones stay quiet.
    assert page.locator("#errors_justification p").count() == 0
    page.fill("#id_endpoint_identifier", "orders-mysql")
    page.locator("#id_endpoint_identifier").blur()
    page.wait_for_selector("#errors_endpoint_identifier p", state="detached")
