"""Logging in and out through the browser."""
import pytest
from django.contrib.auth import get_user_model

from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_wrong_password_is_refused_and_the_right_one_opens_the_dashboard(new_page):
    get_user_model().objects.create_user("dana", password=PASSWORD)
    page = new_page()
    page.goto("/")
    assert "/auth/login/" in page.url  # the dashboard needs a login

    page.fill("#id_username", "dana")
    page.fill("#id_password", "not-the-password")
    page.click("button[type=submit]")
    assert page.locator(".form-errors").is_visible()

    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Dashboard')")
    assert page.locator(".topbar .who").inner_text().startswith("dana")

    page.click("text=Log out")
    page.wait_for_url("**/auth/login/")
    page.goto("/")
    assert "/auth/login/" in page.url


def test_stylesheet_and_htmx_are_served_by_the_portal(new_page):
    page = new_page()
    responses = []
    page.on("response", lambda response: responses.append(response))
    page.goto("/auth/login/")
    page.wait_for_function("window.htmx !== undefined")
    assets = [r for r in responses if "/static/" in r.url]
    assert {a.url.rsplit("/", 1)[-1] for a in assets} >= {"portal.css", "htmx.min.js"}
    assert all(a.status == 200 and a.url.startswith(page.url.split("/auth/")[0]) for a in assets)
    # The page loads nothing from any other host (closed networks, strict CSP).
    assert all(r.url.startswith(page.url.split("/auth/")[0]) for r in responses)
