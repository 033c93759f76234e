"""A real headless Chromium driving the portal served by ``live_server``.

Playwright's sync API runs its own event loop in the test thread; Django's
async-safety check would then refuse database access from that thread, which
is safe here because the test thread is the only one using its connection.
"""
import json
import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
# The README's pictures; refreshed only when asked (make screenshots), so a
# test run never leaves the committed files changed.
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
REFRESH_DOCS_SCREENSHOTS = os.environ.get("PORTAL_DOCS_SCREENSHOTS") == "1"
PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The default hasher costs seconds per login on a busy CI machine; what is
    # under test here is the pages, not the hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, live_server):
    """Open pages in fresh browser contexts (one per person), closed after the test."""
    contexts = []

    def open_page():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def log_in(new_page):
    """A page of a fresh browser, logged in through the login form as ``username``."""

    def _log_in(username: str, password: str = PASSWORD):
        page = new_page()
        page.goto("/auth/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_selector(".topbar .who")
        return page

    return _log_in


@pytest.fixture
def screenshot():
    def _screenshot(page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _screenshot


@pytest.fixture
def docs_screenshot():
    """``docs_screenshot(page, name, *selectors)``: the README's picture of the part of the
    page the selectors cover (at most ``max_height`` pixels of it, the page ``width`` wide),
    written to docs/screenshots/<name>.png under ``make screenshots`` only."""

    def _docs_screenshot(page, name: str, *selectors: str, max_height: int = 1000, width: int | None = None):
        if not REFRESH_DOCS_SCREENSHOTS:
            return None
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = DOCS_SCREENSHOTS / f"{name}.png"
        viewport = page.viewport_size
        if width:
            page.set_viewport_size({"width": width, "height": viewport["height"]})
        boxes = [
            page.locator(selector).first.evaluate(
                "e => { const r = e.getBoundingClientRect();"
                " return {x: r.left + scrollX, y: r.top + scrollY, right: r.right + scrollX, bottom: r.bottom + scrollY}; }"
            )
            for selector in selectors or ("main",)
        ]
        margin = 8  # a little of the page around the cards' borders
        x, y = max(min(b["x"] for b in boxes) - margin, 0), max(min(b["y"] for b in boxes) - margin, 0)
        clip = {
            "x": x, "y": y, "width": max(b["right"] for b in boxes) + margin - x,
            "height": min(max(b["bottom"] for b in boxes) + margin - y, max_height),
        }  # fmt: skip
        # No blinking caret, no half-played transition in the picture.
        page.screenshot(path=str(path), clip=clip, full_page=True, animations="disabled", caret="hide", scale="css")
        if width:
            page.set_viewport_size(viewport)
        return path

    return _docs_screenshot


# --- The live system (tests/live_system.py): a moto server, real Celery
# workers; plus the portal's people and accounts for the journeys.


@pytest.fixture(scope="module")
def managed_secret_arn(moto_world) -> str:
    """A secret under the AWS-managed aws/secretsmanager key: it cannot be shared cross-account."""
    from tests.integration.world import SECRET_VALUE
    from tests.requests_app.rows import REMOTE_ID

    secrets = moto_world.admin(REMOTE_ID, "secretsmanager")
    return secrets.create_secret(Name="prod/legacy-db/credentials", SecretString=json.dumps(SECRET_VALUE))["ARN"]


@pytest.fixture
def portal_aws(moto_server, moto_world, monkeypatch):
    """The web process (live_server's thread) talks to the same moto server as the workers,
    whatever factory an earlier test of the session left behind."""
    from provisioning.clients import ClientFactory
    from requests_app.aws import client_factory, set_client_factory

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    previous = client_factory()
    set_client_factory(ClientFactory(endpoint_url=moto_server))
    yield moto_server
    set_client_factory(previous)


@pytest.fixture
def people():
    """The runbook's accounts with a requester (DataLake) and an approver (Remote) who can log in."""
    from django.contrib.auth import get_user_model

    from tests.requests_app.rows import portal_accounts

    users = get_user_model().objects
    requester = users.create_user("dana.requester", password=PASSWORD)
    approver = users.create_user("omar.approver", password=PASSWORD)
    datalake, remote = portal_accounts()
    datalake.requesters.add(requester)
    remote.approvers.add(approver)
    return {"requester": requester, "approver": approver, "datalake": datalake, "remote": remote}
