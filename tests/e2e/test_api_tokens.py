"""A person makes an API token in the browser, sees it once, uses it, and revokes it."""
import pytest
import requests
from django.contrib.auth import get_user_model

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_content_security_policy import COLLECT_VIOLATIONS

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_token_is_made_shown_once_used_and_revoked(live_server, log_in, screenshot):
    get_user_model().objects.create_user("kim.scripts", password=PASSWORD)
    page = log_in("kim.scripts")
    page.context.add_init_script(COLLECT_VIOLATIONS)

    page.click(".topbar .who a:has-text('API tokens')")
    page.fill("#id_name", "nightly export")
    page.fill("#id_expires_days", "7")
    page.click("button:has-text('Make the token')")
    token = page.input_value("#new-token input")
    screenshot(page, "api-token-made")

    def calls_with(value):
        return requests.get(
            f"{live_server.url}/api/v1/tokens/", headers={"Authorization": f"Token {value}"}, timeout=10
        )

    answer = calls_with(token)
    assert answer.status_code == 200 and answer.json()[0]["name"] == "nightly export"
    assert "token" not in answer.json()[0]

    page.goto("/tokens/")
    assert token not in page.content()
    assert page.locator("#tokens").inner_text().count("nightly export") == 1

    page.click("#tokens button:has-text('Revoke')")
    page.wait_for_selector(".messages li")
    assert "revoked" in page.inner_text(".messages")
    assert calls_with(token).status_code == 401
    assert page.evaluate("window.__violations") == []
