"""Who may do what: every role, signed in with a session or calling with an
API token, against every action on the pages and in the API.

Everything comes from ``TABLE`` (tests/security/actions.py): one row per
action (where it is, the state the request must be in, and the roles
allowed). Each row is one test that
tries the action as every role, through a browser session and through an
API token, each try in a savepoint of its own, and reports every cell that
differs from the table. ``test_the_table_covers_every_route`` keeps the
table complete: a new URL without a row fails it.

Roles, around one request filed by ``requester`` for the DataLake account and
touching the Remote account:

- anonymous: nobody signed in (with a token: one that does not exist);
- other_requester: files for another DataLake account;
- requester: files for the request's DataLake account, and filed this request;
- other_approver: approves for another Remote account;
- approver: approves for the request's Remote account;
- staff: a portal administrator (staff with the administer_portal permission), member of no account.

Some rows name roles whose try is an ask rather than the deed (``asks``): the
requester's repair of a statement removed in the Remote account files a repair
request for its approvers and runs nothing.

A refusal must be a clean one: 401 for an anonymous API call, 404 for a
request the caller may not see (never revealing it exists), 403 for one they
see but may not act on; the pages send anonymous people (and API tokens,
which pages never accept) to the login page, answer 404 likewise, and turn
a forbidden button press back with the state untouched.
"""
from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client

from requests_app.models import AccessRequest, AuditEvent, AwsAccount
from tests.factories import api_token_for
from tests.security.actions import NOT_PERMISSION_BEARING, ROLES, TABLE, VIEWERS, Action, body_for, route_names, the_request

pytestmark = pytest.mark.django_db


def test_the_table_covers_every_route():
    assert route_names() - NOT_PERMISSION_BEARING == {action.route for action in TABLE}


class Rollback(Exception):
    """Ends one try's savepoint, so every role starts from the same rows."""


def credentials(client: Client, people: dict) -> dict:
    """Per (role, auth): the session cookie to hold, or the token header to send."""
    found = {}
    for role in ROLES:
        if role == "anonymous":
            found[role, "session"] = (None, {})
            found[role, "token"] = (None, {"HTTP_AUTHORIZATION": "Token dmsap_" + "0" * 64})
            continue
        act_as(client, None)  # a session of its own: logging in over another one would end that one
        client.force_login(people[role])
        found[role, "session"] = (client.cookies[settings.SESSION_COOKIE_NAME].value, {})
        found[role, "token"] = (None, {"HTTP_AUTHORIZATION": f"Token {api_token_for(people[role])}"})
    return found


def act_as(client: Client, session: str | None) -> None:
    if session:
        client.cookies[settings.SESSION_COOKIE_NAME] = session
    else:
        client.cookies.pop(settings.SESSION_COOKIE_NAME, None)


def attempt(action: Action, role: str, auth: str, client: Client, headers: dict, request: AccessRequest) -> str | None:
    """Try ``action`` as ``role``; None when the outcome is what the table says, else what went wrong."""
    path = action.path_for(request)
    counts = _counts(action)
    asks_before = AuditEvent.objects.filter(action=action.asked).count() if action.asks else 0
    body = body_for(action, request)
    if action.method == "GET":
        response = client.get(path, **headers)
    elif action.method == "DELETE":
        response = client.delete(path, **headers)
    elif action.route.startswith("api:"):
        send = getattr(client, action.method.lower())
        response = send(path, body, content_type="application/json", **headers)
    else:
        response = client.post(path, body, HTTP_HX_TRIGGER_NAME=next(iter(body), ""), **headers)
    request.refresh_from_db()

    served_by_the_api = action.route.startswith("api:") or action.route in ("schema", "api-docs")
    is_page = not served_by_the_api and action.route not in ("healthz", "readyz", "metrics", "slack_interactions")
    # Pages accept browser sessions only: a token is nobody to them.
    effective = "anonymous" if is_page and auth == "token" else role
    # A token that does not exist is refused everywhere in the API, its open parts included.
    bad_token = served_by_the_api and auth == "token" and role == "anonymous"
    # A token cannot make tokens: only a person signed in can.
    expected = effective in action.allowed and not bad_token and not (action.session_only and auth == "token")
    status = response.status_code
    if status >= 500:
        return f"{status} server error"
    done = _done(action, request, response, counts)
    if effective in action.asks and not bad_token:
        asked = AuditEvent.objects.filter(action=action.asked).count() == asks_before + 1
        if status < 400 and asked and request.state == action.state:
            return None
        return f"answered {status}, asked: {asked}, state {request.state}; expected an ask that runs nothing"
    if expected:
        return None if done else f"refused with {status}, expected allowed"
    if done:
        return f"allowed with {status}, expected refused"
    clean = 401 if bad_token else _clean_refusal(action, effective, is_page)
    return None if status == clean else f"refused with {status}, expected {clean}"


def _counts(action: Action) -> int:
    if action.creates is AccessRequest or action.creates is AwsAccount:
        return action.creates.objects.count()
    if isinstance(action.creates, str):
        return AuditEvent.objects.filter(action=action.creates).count()
    return 0


def _done(action: Action, request: AccessRequest, response, counts_before: int) -> bool:
    status = response.status_code
    if action.proof == "ok":
        return 200 <= status < 300
    if action.proof == "listed":
        body = b"".join(response.streaming_content) if response.streaming else response.content
        text = body.decode()
        if action.in_set:  # a list of multi-grant requests names the set
            marker = rf'"id":\s*{request.request_set_id}\b'
        else:
            marker = rf'"id":\s*{request.pk}\b|/requests/{request.pk}/|"request":\s*{request.pk}\b|^{request.pk},|,{request.pk},'
        return status == 200 and re.search(marker, text, re.MULTILINE) is not None
    if action.proof == "reveals":
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return status == 200 and action.marker in body.decode()
    if action.proof == "moved":
        return request.state == action.to
    return _counts(action) > counts_before


def _clean_refusal(action: Action, role: str, is_page: bool) -> int:
    if role == "anonymous":
        return 302 if is_page else 401
    if action.proof == "listed":
        return 200  # the list, without the request
    if action.about_the_request and role not in VIEWERS:
        return 404
    return action.refused_as.get(role, action.refused)


@pytest.mark.parametrize("action", TABLE, ids=[f"{a.route.split(':')[0]}-{a.method}-{a.name}" for a in TABLE])
def test_every_role_gets_what_the_table_says(action, people, site, request, figures):
    if action.needs_aws:
        request.getfixturevalue("fake_aws")
    the_one = the_request(action, people, site)
    # One client for every try: each new client would load the middleware
    # (and WhiteNoise would scan every static file) again.
    client = Client()
    wrong = {}
    tries = 0
    for (role, auth), (session, headers) in credentials(client, people).items():
        tries += 1
        act_as(client, session)
        try:
            with transaction.atomic():
                outcome = attempt(action, role, auth, client, headers, the_one)
                raise Rollback
        except Rollback:
            pass
        if outcome is not None:
            wrong[f"{role} ({auth})"] = outcome
    figures.record(tries=tries, not_as_the_table_says=len(wrong), allowed=", ".join(sorted(action.allowed)))
    assert wrong == {}
