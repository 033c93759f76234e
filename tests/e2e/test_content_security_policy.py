"""Every page works under the portal's strict Content-Security-Policy.

The policy allows only the portal's own scripts and styles, none inline. A
real browser enforces it; this journey opens every page (the login, the
portal's pages with their htmx parts, Django's admin, Swagger UI) and
collects every violation the browser reports.
"""
import pytest
from django.contrib.auth import get_user_model

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_journeys import file_request

pytestmark = pytest.mark.django_db(transaction=True)

# Each page's violations, reported by the browser as they happen.
COLLECT_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} in ${e.sourceFile}:${e.lineNumber}`);
});
"""


def violations_on(page, path: str, *, ready: str) -> list[str]:
    page.goto(path)
    page.wait_for_selector(ready)
    page.wait_for_load_state("networkidle")
    return page.evaluate("window.__violations")


def test_no_page_breaks_the_content_security_policy(people, portal_aws, moto_world, new_page, log_in, figures):
    get_user_model().objects.create_superuser("sam.staff", password=PASSWORD)
    found: dict[str, list[str]] = {}

    anonymous = new_page()
    anonymous.context.add_init_script(COLLECT_VIOLATIONS)
    found["/auth/login/"] = violations_on(anonymous, "/auth/login/", ready="#id_username")

    requester = log_in("dana.requester")
    requester.context.add_init_script(COLLECT_VIOLATIONS)
    requester.goto("/requests/new/")
    # Inline validation: htmx posts the field and swaps the message in.
    requester.fill("#id_endpoint_identifier", "-not-valid-")
    requester.locator("#id_endpoint_identifier").blur()
    requester.wait_for_load_state("networkidle")
    found["/requests/new/"] = requester.evaluate("window.__violations")
    request_id = file_request(requester, secret_arn=moto_world.secret_arn, endpoint_identifier="csp-checked")
    for path, ready in [
        ("/", "h1"),
        ("/requests/", "h1"),
        (f"/requests/{request_id}/", "#live-summary"),
        ("/audit/", "h1"),
        ("/accounts/", "h1"),
    ]:
        found[path] = violations_on(requester, path, ready=ready)

    approver = log_in("omar.approver")
    approver.context.add_init_script(COLLECT_VIOLATIONS)
    found["/approvals/"] = violations_on(approver, "/approvals/", ready="h1")
    found[f"/requests/{request_id}/ (approver)"] = violations_on(approver, f"/requests/{request_id}/", ready="#live-summary")

    staff = log_in("sam.staff")
    staff.context.add_init_script(COLLECT_VIOLATIONS)
    for path, ready in [
        ("/admin/", "#content"),
        ("/admin/requests_app/accessrequest/", "#result_list"),
        (f"/admin/requests_app/accessrequest/{request_id}/change/", "#content"),
        ("/admin/auth/user/add/", "#content"),
        # The account form: its people pickers (the admin's own script) and the external id field.
        ("/admin/requests_app/awsaccount/add/", "#id_approvers_from"),
        ("/api/docs/", ".opblock"),
    ]:
        found[path] = violations_on(staff, path, ready=ready)

    figures.record(pages_checked=len(found), violations=sum(len(items) for items in found.values()))
    assert {path: items for path, items in found.items() if items} == {}
