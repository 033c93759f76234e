"""The one table of who may do what in the portal.

``TABLE`` has one row per action a person can try, on the pages and in the
API: where it is, the state the request must be in, the roles allowed, and
how to tell that it was done. tests/security/test_authorization.py tries
every row as every role; test_headers.py uses the rows as the list of
everything the portal answers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from requests_app.models import AccessRequest, AwsAccount
from requests_app.services import access_request_extend
from tests.requests_app.page_rows import SECRET_ARN, make_request

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
    pending_extension: bool = False  # the (active, expiring) grant has an extension awaiting the approvers


FILE_BODY = {
    "datalake_account": "111111111111",
    "secret_arn": SECRET_ARN,
    "engine": "mysql",
    "endpoint_identifier": "filed-in-the-matrix",
    "justification": "Nightly replication of the orders database.",
}
LATER = (timezone.now() + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M")
EXTEND_BODY = {"expires_at": LATER, "justification": "the migration takes another quarter"}
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
    Action("repair", "web:request_action", "POST", "/requests/{id}/repair/", VIEWERS, state=S.ACTIVE,
           proof="moved", to=S.PROVISIONING, refused=302),
    Action("ask for an extension", "web:request_extend", "POST", "/requests/{id}/extend/", frozenset({"requester"}),
           state=S.ACTIVE, proof="created", creates="extension.requested", body=EXTEND_BODY, refused=302),
    Action("approve the extension", "web:request_action", "POST", "/requests/{id}/extension_approve/",
           frozenset({"approver"}), state=S.ACTIVE, pending_extension=True, proof="created",
           creates="decision.extension_approve", refused=302),
    Action("reject the extension", "web:request_action", "POST", "/requests/{id}/extension_reject/",
           frozenset({"approver"}), state=S.ACTIVE, pending_extension=True, proof="created",
           creates="decision.extension_reject", body={"comment": "not this time"}, refused=302),
    Action("download the change", "web:request_export", "GET", "/requests/{id}/export/cloudformation/", VIEWERS),
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
    Action("repair", "api:request-repair", "POST", "/api/v1/requests/{id}/repair/", VIEWERS, state=S.ACTIVE,
           proof="moved", to=S.PROVISIONING),
    Action("ask for an extension", "api:request-extend", "POST", "/api/v1/requests/{id}/extend/",
           frozenset({"requester"}), state=S.ACTIVE, proof="created", creates="extension.requested",
           body={**EXTEND_BODY, "expires_at": LATER + ":00Z"}),
    Action("approve the extension", "api:request-extension-approve", "POST",
           "/api/v1/requests/{id}/extension/approve/", frozenset({"approver"}), state=S.ACTIVE,
           pending_extension=True, proof="created", creates="decision.extension_approve"),
    Action("reject the extension", "api:request-extension-reject", "POST", "/api/v1/requests/{id}/extension/reject/",
           frozenset({"approver"}), state=S.ACTIVE, pending_extension=True, proof="created",
           creates="decision.extension_reject", body={"comment": "not this time"}),
    Action("download the change", "api:request-export", "GET", "/api/v1/requests/{id}/export/?format=cloudformation",
           VIEWERS),
    Action("audit events show it", "api:audit-events", "GET", "/api/v1/audit-events/?request={id}", VIEWERS,
           proof="listed", about_the_request=False),
    Action("audit event stream holds it", "api:audit-events-export", "GET", "/api/v1/audit-events/export/",
           VIEWERS, proof="listed", about_the_request=False),
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


def the_request(action: Action, people: dict, site: dict) -> AccessRequest:
    """The request ``action`` is tried on, in the state the row names."""
    request = make_request(people["requester"], site, state=action.state, with_steps=action.state == S.FAILED)
    if action.state == S.FAILED:
        request.steps.filter(name="verify").update(status="failed")
    if action.state == S.ACTIVE:
        request.expires_at = timezone.now() + timedelta(days=30)
        request.save(update_fields=["expires_at"])
    if action.pending_extension:
        access_request_extend(
            request_id=request.pk, user=people["requester"], expires_at=timezone.now() + timedelta(days=60)
        )
    return request
