"""Who may do what: every role, signed in with a session or calling with an
API token, against every action on the pages and in the API.

Everything comes from ``TABLE``: one row per action (where it is, the state
the request must be in, and the roles allowed). Each row is one test that
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
- staff: an administrator, member of no account.

A refusal must be a clean one: 401 for an anonymous API call, 404 for a
request the caller may not see (never revealing it exists), 403 for one they
see but may not act on; the pages send anonymous people (and API tokens,
which pages never accept) to the login page, answer 404 likewise, and turn
a forbidden button press back with the state untouched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from moto import mock_aws
from rest_framework.authtoken.models import Token

from requests_app.aws import set_client_factory
from requests_app.models import AccessRequest, AwsAccount
from tests.requests_app.page_rows import SECRET_ARN, make_request

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "other_requester", "requester", "other_approver", "approver", "staff")
SIGNED_IN = frozenset(ROLES[1:])
EVERYONE = frozenset(ROLES)
VIEWERS = frozenset({"requester", "approver", "staff"})
S = AccessRequest.State


@dataclass(frozen=True)
class Action:
    """One thing a person may try; ``allowed`` are the roles that may."""

    name: str
    route: str  # URL name: "web:..." for pages, "api:..." for the API, or a top-level name
    method: str
    path: str  # {id} is the request's id
    allowed: frozenset
    state: str = S.PENDING_APPROVAL
    # How "allowed" shows: "ok" (a 2xx answer), "listed" (the request appears
    # in the answer), "moved" (the request reached state ``to``), "created"
    # (a new row of ``creates``).
    proof: str = "ok"
    to: str = ""
    creates: type | None = None
    body: dict = field(default_factory=dict)
    # What a signed-in person who may not gets: the status of a clean refusal.
    refused: int = 403
    about_the_request: bool = True  # refuses non-viewers with 404
    needs_aws: bool = False


FILE_BODY = {
    "datalake_account": "111111111111",
    "secret_arn": SECRET_ARN,
    "engine": "mysql",
    "endpoint_identifier": "filed-in-the-matrix",
    "justification": "Nightly replication of the orders database.",
}
REGISTER_BODY = {
    "account_id": "444444444444",
    "name": "Registered in the matrix",
    "is_datalake": True,
    "is_remote": False,
    "provisioner_role_arn": "arn:aws:iam::444444444444:role/dms-access-portal-provisioner",
}

# fmt: off
TABLE = [
    # --- pages -------------------------------------------------------------------------------------------
    Action("dashboard", "web:dashboard", "GET", "/", SIGNED_IN, about_the_request=False),
    Action("request list shows it", "web:request_list", "GET", "/requests/", VIEWERS, proof="listed",
           about_the_request=False),
    Action("request form", "web:request_new", "GET", "/requests/new/", SIGNED_IN, about_the_request=False),
    Action("file a request", "web:request_new", "POST", "/requests/new/", frozenset({"requester"}),
           proof="created", creates=AccessRequest, body={**FILE_BODY, "endpoint_type": "source"}, refused=400,
           about_the_request=False, needs_aws=True),
    Action("inline validation", "web:request_validate", "POST", "/requests/new/validate/", SIGNED_IN,
           body={"endpoint_identifier": "ok-name"}, about_the_request=False),
    Action("request detail", "web:request_detail", "GET", "/requests/{id}/", VIEWERS),
    Action("live progress", "web:request_live", "GET", "/requests/{id}/live/", VIEWERS),
    Action("policy diff", "web:request_policies", "GET", "/requests/{id}/policies/", VIEWERS, needs_aws=True),
    Action("approve", "web:request_action", "POST", "/requests/{id}/approve/", frozenset({"approver"}),
           proof="moved", to=S.APPROVED, refused=302),
    Action("reject", "web:request_action", "POST", "/requests/{id}/reject/", frozenset({"approver"}),
           proof="moved", to=S.REJECTED, body={"comment": "not this one"}, refused=302),
    Action("cancel", "web:request_action", "POST", "/requests/{id}/cancel/", frozenset({"requester"}),
           proof="moved", to=S.CANCELLED, refused=302),
    Action("revoke", "web:request_action", "POST", "/requests/{id}/revoke/", VIEWERS, state=S.ACTIVE,
           proof="moved", to=S.REVOKING, refused=302),
    Action("retry", "web:request_action", "POST", "/requests/{id}/retry/", frozenset({"requester", "staff"}),
           state=S.FAILED, proof="moved", to=S.PROVISIONING, refused=302),
    Action("refresh preflight", "web:request_action", "POST", "/requests/{id}/refresh_preflight/",
           frozenset({"requester", "approver"}), proof="created", creates="request.preflight_refreshed",
           refused=302, needs_aws=True),
    Action("approval queue shows it", "web:approval_queue", "GET", "/approvals/", frozenset({"approver"}),
           proof="listed", about_the_request=False),
    Action("audit log shows it", "web:audit_log", "GET", "/audit/", VIEWERS, proof="listed",
           about_the_request=False),
    Action("audit export holds it", "web:audit_export", "GET", "/audit/export.csv", VIEWERS, proof="listed",
           about_the_request=False),
    Action("accounts", "web:accounts", "GET", "/accounts/", SIGNED_IN, about_the_request=False),
    Action("admin", "admin:index", "GET", "/admin/", frozenset({"staff"}), refused=302, about_the_request=False),
    # --- API ---------------------------------------------------------------------------------------------
    Action("list requests shows it", "api:requests", "GET", "/api/v1/requests/", VIEWERS, proof="listed",
           about_the_request=False),
    Action("awaiting my approval shows it", "api:requests", "GET", "/api/v1/requests/?awaiting_my_approval=true",
           frozenset({"approver"}), proof="listed", about_the_request=False),
    Action("file a request", "api:requests", "POST", "/api/v1/requests/", frozenset({"requester"}),
           proof="created", creates=AccessRequest, body=FILE_BODY, about_the_request=False, needs_aws=True),
    Action("request", "api:request-detail", "GET", "/api/v1/requests/{id}/", VIEWERS),
    Action("plan", "api:request-plan", "GET", "/api/v1/requests/{id}/plan/", VIEWERS),
    Action("approve", "api:request-approve", "POST", "/api/v1/requests/{id}/approve/", frozenset({"approver"}),
           proof="moved", to=S.APPROVED),
    Action("reject", "api:request-reject", "POST", "/api/v1/requests/{id}/reject/", frozenset({"approver"}),
           proof="moved", to=S.REJECTED, body={"comment": "not this one"}),
    Action("cancel", "api:request-cancel", "POST", "/api/v1/requests/{id}/cancel/", frozenset({"requester"}),
           proof="moved", to=S.CANCELLED),
    Action("revoke", "api:request-revoke", "POST", "/api/v1/requests/{id}/revoke/", VIEWERS, state=S.ACTIVE,
           proof="moved", to=S.REVOKING),
    Action("retry", "api:request-retry", "POST", "/api/v1/requests/{id}/retry/", frozenset({"requester", "staff"}),
           state=S.FAILED, proof="moved", to=S.PROVISIONING),
    Action("audit events show it", "api:audit-events", "GET", "/api/v1/audit-events/?request={id}", VIEWERS,
           proof="listed", about_the_request=False),
    Action("accounts", "api:accounts", "GET", "/api/v1/accounts/", SIGNED_IN, about_the_request=False),
    Action("register an account", "api:accounts", "POST", "/api/v1/accounts/", frozenset({"staff"}),
           proof="created", creates=AwsAccount, body=REGISTER_BODY, about_the_request=False),
    # --- open to everyone --------------------------------------------------------------------------------
    Action("API schema", "schema", "GET", "/api/schema/", EVERYONE, about_the_request=False),
    Action("API docs", "api-docs", "GET", "/api/docs/", EVERYONE, about_the_request=False),
    Action("liveness", "healthz", "GET", "/healthz", EVERYONE, about_the_request=False),
    Action("readiness", "readyz", "GET", "/readyz", EVERYONE, about_the_request=False),
    Action("metrics", "metrics", "GET", "/metrics", EVERYONE, about_the_request=False),
]
# fmt: on
# Routes that grant nothing: signing in and out, and the API's JSON 404 for unknown paths.
NOT_PERMISSION_BEARING = {"login", "logout", "api:not-found"}


def route_names() -> set[str]:
    """Every named route of the portal (Django admin counted once, as its index)."""
    names = set()

    def walk(patterns, namespace):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace == "admin":
                    names.add("admin:index")
                else:
                    walk(pattern.url_patterns, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and pattern.name:
                names.add(f"{namespace}:{pattern.name}" if namespace else pattern.name)

    walk(get_resolver().url_patterns, None)
    return names


def test_the_table_covers_every_route():
    assert route_names() - NOT_PERMISSION_BEARING == {action.route for action in TABLE}


@pytest.fixture
def people() -> dict:
    users = get_user_model().objects
    people = {role: users.create_user(role.replace("_", "."), password=None) for role in SIGNED_IN}
    people["staff"].is_staff = True
    people["staff"].save(update_fields=["is_staff"])
    return people


@pytest.fixture
def site(people) -> dict:
    def account(account_id, name, **flags):
        return AwsAccount.objects.create(
            account_id=account_id,
            name=name,
            provisioner_role_arn=f"arn:aws:iam::{account_id}:role/dms-access-portal-provisioner",
            **flags,
        )

    accounts = {
        "datalake": account("111111111111", "DataLake", is_datalake=True),
        "remote": account("222222222222", "Remote", is_remote=True),
        "other_datalake": account("333333333333", "Other DataLake", is_datalake=True),
        "other_remote": account("555555555555", "Other Remote", is_remote=True),
    }
    accounts["datalake"].requesters.add(people["requester"])
    accounts["remote"].approvers.add(people["approver"])
    accounts["other_datalake"].requesters.add(people["other_requester"])
    accounts["other_remote"].approvers.add(people["other_approver"])
    return accounts


@pytest.fixture
def fake_aws(monkeypatch):
    """AWS for the actions that read it (preflight, live policies): an empty moto."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        set_client_factory(None)
        yield
    set_client_factory(None)


class Rollback(Exception):
    """Ends one try's savepoint, so every role starts from the same rows."""


def client_for(role: str, auth: str, people: dict) -> Client:
    if auth == "token":
        key = Token.objects.create(user=people[role]).key if role != "anonymous" else "0" * 40
        return Client(HTTP_AUTHORIZATION=f"Token {key}")
    client = Client()
    if role != "anonymous":
        client.force_login(people[role])
    return client


def the_request(action: Action, people: dict, site: dict) -> AccessRequest:
    """The request ``action`` is tried on, in the state the row names."""
    request = make_request(people["requester"], site, state=action.state, with_steps=action.state == S.FAILED)
    if action.state == S.FAILED:
        request.steps.filter(name="verify").update(status="failed")
    return request


def attempt(action: Action, role: str, auth: str, client: Client, request: AccessRequest) -> str | None:
    """Try ``action`` as ``role``; None when the outcome is what the table says, else what went wrong."""
    path = action.path.format(id=request.pk)
    counts = _counts(action)
    if action.method == "GET":
        response = client.get(path)
    elif action.route.startswith("api:"):
        response = client.post(path, action.body, content_type="application/json")
    else:
        response = client.post(path, action.body, HTTP_HX_TRIGGER_NAME=next(iter(action.body), ""))
    request.refresh_from_db()

    served_by_the_api = action.route.startswith("api:") or action.route in ("schema", "api-docs")
    is_page = not served_by_the_api and action.route not in ("healthz", "readyz", "metrics")
    # Pages accept browser sessions only: a token is nobody to them.
    effective = "anonymous" if is_page and auth == "token" else role
    # A token that does not exist is refused everywhere in the API, its open parts included.
    bad_token = served_by_the_api and auth == "token" and role == "anonymous"
    expected = effective in action.allowed and not bad_token
    status = response.status_code
    if status >= 500:
        return f"{status} server error"
    done = _done(action, request, response, counts)
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
        from requests_app.models import AuditEvent

        return AuditEvent.objects.filter(action=action.creates).count()
    return 0


def _done(action: Action, request: AccessRequest, response, counts_before: int) -> bool:
    status = response.status_code
    if action.proof == "ok":
        return 200 <= status < 300
    if action.proof == "listed":
        body = b"".join(response.streaming_content) if response.streaming else response.content
        text = body.decode()
        marker = rf'"id":\s*{request.pk}\b|/requests/{request.pk}/|"request":\s*{request.pk}\b|^{request.pk},|,{request.pk},'
        return status == 200 and re.search(marker, text, re.MULTILINE) is not None
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
    return action.refused


@pytest.mark.parametrize("action", TABLE, ids=[f"{a.route.split(':')[0]}-{a.method}-{a.name}" for a in TABLE])
def test_every_role_gets_what_the_table_says(action, people, site, request, figures):
    if action.needs_aws:
        request.getfixturevalue("fake_aws")
    the_one = the_request(action, people, site)
    clients = {(role, auth): client_for(role, auth, people) for auth in ("session", "token") for role in ROLES}
    wrong = {}
    for (role, auth), client in clients.items():
        try:
            with transaction.atomic():
                outcome = attempt(action, role, auth, client, the_one)
                raise Rollback
        except Rollback:
            pass
        if outcome is not None:
            wrong[f"{role} ({auth})"] = outcome
    tries = len(clients)
    figures.record(tries=tries, allowed=sorted(action.allowed), wrong=len(wrong))
    assert wrong == {}
