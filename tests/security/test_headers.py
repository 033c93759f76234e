"""The security headers are on every answer: every route of the authorization
table (so every page and API operation), as someone signed in and as nobody,
plus static files, a page that does not exist and the admin's login.
(With HTTPS on, HSTS joins them: tests/security/test_deployment.py.)
"""
from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from tests.security.actions import TABLE, the_request

pytestmark = pytest.mark.django_db

EXPECTED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
EXTRA_PATHS = ["/static/portal/portal.css", "/static/vendor/htmx/htmx.min.js", "/no/such/page/", "/admin/login/"]


def test_every_answer_carries_the_security_headers(people, site, fake_aws, figures):
    request = the_request(TABLE[0], people, site)
    staff = Client()
    staff.force_login(people["staff"])
    answers = {}
    for who, client in (("staff", staff), ("anonymous", Client())):
        for action in TABLE:
            path = action.path_for(request)
            if action.method == "GET":
                response = client.get(path)
            else:
                response = client.post(path, action.body, content_type="application/json")
            answers[f"{who} {action.method} {path}"] = response
        for path in EXTRA_PATHS:
            answers[f"{who} GET {path}"] = client.get(path)

    missing = {}
    for what, response in answers.items():
        headers = {name: response.headers.get(name) for name in [*EXPECTED, "Content-Security-Policy"]}
        wanted = {**EXPECTED, "Content-Security-Policy": settings.CONTENT_SECURITY_POLICY}
        if headers != wanted:
            missing[what] = {name: value for name, value in headers.items() if value != wanted[name]}
    figures.record(answers_checked=len(answers), headers_per_answer=len(EXPECTED) + 1)
    assert missing == {}


def test_the_policy_allows_nothing_from_elsewhere_and_nothing_inline():
    directives = dict(part.strip().split(" ", 1) for part in settings.CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert not any("unsafe" in value or "*" in value or "http" in value for value in directives.values())
