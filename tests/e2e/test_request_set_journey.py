"""A request for three databases in a real browser, against real workers and a moto server.

The requester files it on the new-request page (the request's fields once,
a grant row added with the page's own button), the approver opens it from
the queue and approves its one plan once, and the set's page shows each
grant's state as the workers provision it.
"""
import re
import time

import pytest

from requests_app.models import RequestSet, RequestState
from tests.e2e.test_content_security_policy import COLLECT_VIOLATIONS
from tests.requests_app.rows import DATALAKE_ID

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = 90  # s: a generous ceiling for a busy CI machine, not a timing assertion


def fill_grant(page, index: int, *, secret_arn: str, engine: str, endpoint_identifier: str) -> None:
    page.fill(f"#id_grants-{index}-secret_arn", secret_arn)
    page.select_option(f"#id_grants-{index}-engine", engine)
    page.fill(f"#id_grants-{index}-endpoint_identifier", endpoint_identifier)


def test_three_grants_filed_in_the_browser_and_approved_once(people, portal_aws, moto_world, workers, log_in, screenshot):
    requester = log_in("dana.requester")
    requester.context.add_init_script(COLLECT_VIOLATIONS)
    requester.goto("/requests/new/")
    requester.click("nav.tabs >> text=Several databases")
    # Each field of a row is checked as it is filled in, and only that row's field speaks up.
    requester.fill("#id_grants-1-endpoint_identifier", "9-lives--")
    requester.locator("#id_grants-1-endpoint_identifier").blur()
    requester.locator("#errors_grants-1-endpoint_identifier p").first.wait_for()
    assert requester.locator("#errors_grants-0-endpoint_identifier p").count() == 0
    requester.wait_for_load_state("networkidle")
    assert requester.evaluate("window.__violations") == []  # the form and its checks keep the strict CSP
    requester.select_option("#id_datalake_account", DATALAKE_ID)
    requester.fill("#id_justification", "Replicate the three order databases into the lake.")
    fill_grant(requester, 0, secret_arn=moto_world.secret_arn, engine="mysql", endpoint_identifier="orders-set-a")
    fill_grant(requester, 1, secret_arn=moto_world.secret_arn, engine="postgres", endpoint_identifier="orders-set-b")
    requester.click("button:has-text('Add a grant')")
    # The page came back with a third row and the first two as typed.
    requester.wait_for_selector("#id_grants-2-secret_arn")
    assert requester.input_value("#id_grants-1-endpoint_identifier") == "orders-set-b"
    assert requester.input_value("#id_justification") == "Replicate the three order databases into the lake."
    fill_grant(requester, 2, secret_arn=moto_world.secret_arn, engine="mysql", endpoint_identifier="orders-set-a")
    requester.click("button:has-text('File the request')")
    # Two grants naming one endpoint: refused on the third row, nothing lost.
    error = requester.locator("#errors_grants-2-endpoint_identifier p")
    assert "each grant needs its own endpoint" in error.inner_text()
    assert requester.locator("#errors_grants-0-endpoint_identifier p").count() == 0
    assert requester.input_value("#id_grants-0-secret_arn") == moto_world.secret_arn
    screenshot(requester, "request-set-form-errors")
    requester.fill("#id_grants-2-endpoint_identifier", "orders-set-c")
    # Enter in a field files the request (neither adds nor removes a row).
    requester.press("#id_grants-2-endpoint_identifier", "Enter")
    requester.wait_for_url(re.compile(r"/request-sets/\d+/$"))
    assert requester.evaluate("window.__violations") == []  # the form and its checks keep the strict CSP
    set_id = int(re.search(r"/request-sets/(\d+)/$", requester.url).group(1))
    request_set = RequestSet.objects.get(pk=set_id)
    grants = list(request_set.grants.order_by("pk"))
    assert [g.endpoint_identifier for g in grants] == ["orders-set-a", "orders-set-b", "orders-set-c"]
    assert requester.locator("#grants tr[data-state=pending_approval]").count() == 3
    assert requester.locator("button:has-text('Approve all')").count() == 0

    approver = log_in("omar.approver")
    approver.context.add_init_script(COLLECT_VIOLATIONS)
    approver.goto("/approvals/")
    assert approver.locator(f"a.badge.set:has-text('set #{set_id}')").count() == 3
    screenshot(approver, "request-set-queue")
    approver.locator(f"a:has-text('Approve with set #{set_id}')").first.click()
    approver.wait_for_url(re.compile(rf"/request-sets/{set_id}/"))
    for grant in grants:
        assert approver.locator(f"[data-statement-of='{grant.pk}']").count() == 2
    screenshot(approver, "request-set-approve")
    approver.fill("input[aria-label='Approval comment']", "All three match the runbook.")
    approver.click("button:has-text('Approve all 3 grants')")
    approver.wait_for_selector(".messages .success")
    assert approver.locator("#set-note").inner_text().startswith("No grant awaits approval")
    assert approver.evaluate("window.__violations") == []

    # The set's page shows each grant's state; the workers take each one to active.
    deadline = time.monotonic() + SLOW
    while True:
        requester.reload()
        active = requester.locator("#grants tr[data-state=active]").count()
        if active == 3 or time.monotonic() > deadline:
            break
        assert requester.locator("#grants tr[data-state=failed]").count() == 0
        time.sleep(1)
    assert active == 3, requester.locator("#grants").inner_text()
    assert requester.locator("#grants .badge.state-active").count() == 3
    assert all(g.state == RequestState.ACTIVE for g in request_set.grants.all())
    screenshot(requester, "request-set-active")
    # Each grant's own page names its set and links back to it.
    requester.click(f"#grants a:has-text('#{grants[1].pk}')")
    note = requester.locator("#set-note")
    assert note.inner_text().startswith(f"One of 3 grants of request set #{set_id}")
    screenshot(requester, "request-set-grant")
    note.locator(f"a:has-text('request set #{set_id}')").click()
    requester.wait_for_url(re.compile(rf"/request-sets/{set_id}/$"))
