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

from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from requests_app.audit import record_event
from requests_app.models import AccessRequest, ApiToken, AwsAccount, ProvisioningStep, RequestSet
from requests_app.services import access_request_extend, access_request_repair, rule_propose, rule_version_approve
from requests_app.set_plans import awaiting_grants, set_plan_hash
from tests.requests_app.page_rows import KEY_ARN, SECRET_ARN, make_request

ROLES = ("anonymous", "other_requester", "requester", "other_approver", "approver", "staff")
SIGNED_IN = frozenset(ROLES[1:])
EVERYONE = frozenset(ROLES)
VIEWERS = frozenset({"requester", "approver", "staff"})
REQUESTERS = frozenset({"requester", "other_requester"})
REMOTE_DOCUMENTS = frozenset({"approver", "staff"})
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
    # (a new row of ``creates``), "reveals" (the answer holds ``marker``).
    proof: str = "ok"
    to: str = ""
    creates: type | None = None
    body: dict = field(default_factory=dict)
    # What a signed-in person who may not gets: the status of a clean refusal.
    refused: int = 403
    refused_as: dict = field(default_factory=dict)  # role -> its status, where it differs from ``refused``
    about_the_request: bool = True  # refuses non-viewers with 404
    needs_aws: bool = False
    pending_extension: bool = False  # the (active, expiring) grant has an extension awaiting the approvers
    # The (active) grant's drift: "" (none), "datalake" (its endpoint is gone) or "remote" (its statement
    # was removed from the secret policy); with ``pending_repair`` the requester has asked for a repair.
    drift: str = ""
    pending_repair: bool = False
    # Roles whose try is accepted as an ask, not done: a 2xx (or the page's redirect), one new
    # ``asked`` audit event, and the request left in its state.
    asks: frozenset = frozenset()
    asked: str = ""
    marker: str = ""
    token_of: str = ""  # the role whose API token {token} in the path names
    # An approval rule of the request's Remote account, {rule} in the path: "proposed" (version 1 proposed by
    # another approver of the account) or "in_force" (version 1 approved, nothing proposed).
    rule: str = ""
    session_only: bool = False  # an API action refused (403) to a caller signed in with a token
    # The request is the one grant of a multi-grant request, {set} in the path; "listed" then looks for the
    # set, and an approval names the set's plan.
    in_set: bool = False

    def path_for(self, request: AccessRequest) -> str:
        return self.path.format(id=request.pk, token=getattr(request, "token_id", 0), rule=getattr(request, "rule_id", 0),
                                set=request.request_set_id or 0)  # fmt: skip


DRIFT = {
    "datalake": {"drifted": True, "kinds": ["endpoint_missing"], "findings": [
        {"kind": "endpoint_missing", "resource": "orders-source", "message": "The DMS endpoint no longer exists."}]},
    "remote": {"drifted": True, "kinds": ["secret_statement_missing"], "findings": [
        {"kind": "secret_statement_missing", "resource": SECRET_ARN,
         "message": "The grant's statement is no longer in the secret's resource policy."}]},
}


FILE_BODY = {
    "datalake_account": "111111111111",
    "secret_arn": SECRET_ARN,
    "engine": "mysql",
    "endpoint_identifier": "filed-in-the-matrix",
    "justification": "Nightly replication of the orders database.",
}
LATER = (timezone.now() + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M")
EXTEND_BODY = {"expires_at": LATER, "justification": "the migration takes another quarter"}
# An approval names the plan the approver was shown: "{plan_hash}" is the request's.
SEEN = {"plan_hash": "{plan_hash}"}
# A statement of the Remote account's own, in what the grant_secret_policy step read and wrote.
REMOTE_POLICY = {"Version": "2012-10-17", "Statement": [{"Sid": "RemoteOwnersOwnStatement", "Effect": "Deny",
                                                           "Principal": "*", "Action": "*", "Resource": "*"}]}
REMOTE_MARKER = "RemoteOwnersOwnStatement"
# An approval pressed in the request's Slack message ({id} and {plan_hash} are the request's).
SLACK_APPROVE = (
    '{"type": "block_actions", "user": {"id": "U0APPROVER1"}, "channel": {"id": "C0REMOTE0001"}, '
    '"container": {"message_ts": "1.1"}, "actions": [{"action_id": "approve", '
    '"value": "{\\"request\\": {id}, \\"plan_hash\\": \\"{plan_hash}\\"}"}]}'
)
# An approval rule of the Remote account (``rule`` rows); its name is what the lists reveal.
RULE_NAME = "matrix rule"
RULE_CRITERIA = {"datalake_accounts": ["111111111111"], "engines": ["mysql"], "secret_name_prefix": "prod/",
                 "max_expiry_days": 30}
PROPOSE_RULE = {"account_id": "222222222222", "name": "proposed in the matrix", **RULE_CRITERIA}
RULE_DECIDERS = frozenset({"approver"})
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
    # Only requesters file; one who files for another DataLake account is told what is wrong with the form.
    Action("file a request", "web:request_new", "POST", "/requests/new/", frozenset({"requester"}),
           proof="created", creates=AccessRequest, body={**FILE_BODY, "endpoint_type": "source"},
           refused_as={"other_requester": 400}, about_the_request=False, needs_aws=True),
    Action("inline validation", "web:request_validate", "POST", "/requests/new/validate/", REQUESTERS,
           body={"endpoint_identifier": "ok-name"}, about_the_request=False),
    # The field that changed is the first of the body (sent as HX-Trigger-Name); then the grant rows' count.
    Action("inline validation of a grant", "web:request_set_validate", "POST", "/requests/new/validate-grants/",
           REQUESTERS, body={"grants-0-endpoint_identifier": "ok-name", "grants-TOTAL_FORMS": "1",
                             "grants-INITIAL_FORMS": "0"}, about_the_request=False),
    Action("request detail", "web:request_detail", "GET", "/requests/{id}/", VIEWERS),
    Action("live progress", "web:request_live", "GET", "/requests/{id}/live/", VIEWERS),
    # The Remote account's live policies and the diff: its approvers and administrators, not the requester.
    Action("policy diff", "web:request_policies", "GET", "/requests/{id}/policies/", REMOTE_DOCUMENTS,
           needs_aws=True),
    Action("approve", "web:request_action", "POST", "/requests/{id}/approve/", frozenset({"approver"}),
           proof="moved", to=S.APPROVED, body=SEEN),
    Action("reject", "web:request_action", "POST", "/requests/{id}/reject/", frozenset({"approver"}),
           proof="moved", to=S.REJECTED, body={"comment": "not this one"}),
    Action("cancel", "web:request_action", "POST", "/requests/{id}/cancel/", frozenset({"requester"}),
           proof="moved", to=S.CANCELLED),
    Action("revoke", "web:request_action", "POST", "/requests/{id}/revoke/", VIEWERS, state=S.ACTIVE,
           proof="moved", to=S.REVOKING),
    Action("retry", "web:request_action", "POST", "/requests/{id}/retry/", frozenset({"requester", "staff"}),
           state=S.FAILED, proof="moved", to=S.PROVISIONING),
    Action("refresh preflight", "web:request_action", "POST", "/requests/{id}/refresh_preflight/",
           frozenset({"requester", "approver"}), proof="created", creates="request.preflight_refreshed",
           needs_aws=True),
    Action("repair with no drift", "web:request_action", "POST", "/requests/{id}/repair/", frozenset(),
           state=S.ACTIVE, proof="moved", to=S.PROVISIONING, refused=302),
    Action("repair of DataLake drift", "web:request_action", "POST", "/requests/{id}/repair/", VIEWERS,
           state=S.ACTIVE, drift="datalake", proof="moved", to=S.PROVISIONING),
    Action("repair of Remote drift", "web:request_action", "POST", "/requests/{id}/repair/",
           frozenset({"approver", "staff"}), state=S.ACTIVE, drift="remote", proof="moved", to=S.PROVISIONING,
           asks=frozenset({"requester"}), asked="repair.requested"),
    Action("approve the repair", "web:request_action", "POST", "/requests/{id}/repair_approve/",
           frozenset({"approver"}), state=S.ACTIVE, drift="remote", pending_repair=True, proof="moved",
           to=S.PROVISIONING, body=SEEN),
    Action("reject the repair", "web:request_action", "POST", "/requests/{id}/repair_reject/",
           frozenset({"approver"}), state=S.ACTIVE, drift="remote", pending_repair=True, proof="created",
           creates="decision.repair_reject", body={"comment": "removed on purpose"}),
    Action("ask for an extension", "web:request_extend", "POST", "/requests/{id}/extend/", frozenset({"requester"}),
           state=S.ACTIVE, proof="created", creates="extension.requested", body=EXTEND_BODY),
    Action("approve the extension", "web:request_action", "POST", "/requests/{id}/extension_approve/",
           frozenset({"approver"}), state=S.ACTIVE, pending_extension=True, proof="created",
           creates="decision.extension_approve", body=SEEN),
    Action("reject the extension", "web:request_action", "POST", "/requests/{id}/extension_reject/",
           frozenset({"approver"}), state=S.ACTIVE, pending_extension=True, proof="created",
           creates="decision.extension_reject", body={"comment": "not this time"}),
    Action("download the change", "web:request_export", "GET", "/requests/{id}/export/cloudformation/", VIEWERS),
    Action("approval queue shows it", "web:approval_queue", "GET", "/approvals/", frozenset({"approver"}),
           proof="listed", about_the_request=False),
    Action("audit log shows it", "web:audit_log", "GET", "/audit/", VIEWERS, proof="listed",
           about_the_request=False),
    Action("audit export holds it", "web:audit_export", "GET", "/audit/export.csv", VIEWERS, proof="listed",
           about_the_request=False),
    Action("accounts", "web:accounts", "GET", "/accounts/", SIGNED_IN, about_the_request=False),
    # A Remote account's rules: its approvers (and administrators, who see but decide nothing) only.
    Action("rules page lists the rule", "web:rules", "GET", "/rules/", REMOTE_DOCUMENTS, proof="reveals",
           marker=RULE_NAME, refused=200, rule="proposed", about_the_request=False),
    Action("propose a rule", "web:rules", "POST", "/rules/", RULE_DECIDERS, proof="created", creates="rule.proposed",
           body=PROPOSE_RULE, about_the_request=False),
    Action("rule page", "web:rule_detail", "GET", "/rules/{rule}/", REMOTE_DOCUMENTS, rule="proposed", refused=404,
           about_the_request=False),
    Action("approve a rule change", "web:rule_action", "POST", "/rules/{rule}/approve/", RULE_DECIDERS,
           rule="proposed", proof="created", creates="rule.in_force", body={"version": "1"}, refused=404,
           refused_as={"staff": 403}, about_the_request=False),
    Action("reject a rule change", "web:rule_action", "POST", "/rules/{rule}/reject/", RULE_DECIDERS,
           rule="proposed", proof="created", creates="rule.rejected", body={"version": "1", "comment": "no"},
           refused=404, refused_as={"staff": 403}, about_the_request=False),
    Action("propose a rule change", "web:rule_action", "POST", "/rules/{rule}/change/", RULE_DECIDERS,
           rule="in_force", proof="created", creates="rule.proposed", body=RULE_CRITERIA, refused=404,
           refused_as={"staff": 403}, about_the_request=False),
    Action("propose to disable a rule", "web:rule_action", "POST", "/rules/{rule}/disable/", RULE_DECIDERS,
           rule="in_force", proof="created", creates="rule.proposed", refused=404, refused_as={"staff": 403},
           about_the_request=False),
    # A multi-grant request (here of one grant): its page shows the grants and the one plan; its buttons act on
    # every grant. A refused press is sent back to the set's page with the reason (302), the grants untouched.
    Action("multi-grant request page", "web:request_set_detail", "GET", "/request-sets/{set}/", VIEWERS,
           in_set=True),
    Action("multi-grant request page reveals the secret's key", "web:request_set_detail", "GET",
           "/request-sets/{set}/", REMOTE_DOCUMENTS, proof="reveals", marker=KEY_ARN, refused=200, in_set=True),
    Action("approve a multi-grant request", "web:request_set_action", "POST", "/request-sets/{set}/approve/",
           frozenset({"approver"}), proof="moved", to=S.APPROVED, body=SEEN, in_set=True),
    Action("reject a multi-grant request", "web:request_set_action", "POST", "/request-sets/{set}/reject/",
           frozenset({"approver"}), proof="moved", to=S.REJECTED, body={"comment": "not these"}, in_set=True),
    Action("revoke a multi-grant request", "web:request_set_action", "POST", "/request-sets/{set}/revoke/", VIEWERS,
           state=S.ACTIVE, proof="moved", to=S.REVOKING, in_set=True),
    Action("admin", "admin:index", "GET", "/admin/", frozenset({"staff"}), refused=302, about_the_request=False),
    Action("API tokens", "web:api_tokens", "GET", "/tokens/", SIGNED_IN, about_the_request=False),
    Action("make an API token", "web:api_tokens", "POST", "/tokens/", SIGNED_IN, proof="created",
           creates="token.created", body={"name": "from the page", "expires_days": "7"}, about_the_request=False),
    Action("revoke the requester's token", "web:api_token_revoke", "POST", "/tokens/{token}/revoke/",
           frozenset({"requester", "staff"}), proof="created", creates="token.revoked", token_of="requester",
           refused=404, about_the_request=False),
    # What the portal read in the Remote account: its approvers' and administrators'. Until approval
    # the requester does not learn the secret's key (they did not name it) from any page or answer.
    Action("request page reveals the secret's key", "web:request_detail", "GET", "/requests/{id}/",
           REMOTE_DOCUMENTS, proof="reveals", marker=KEY_ARN, refused=200),
    Action("download reveals the secret's key", "web:request_export", "GET", "/requests/{id}/export/cli/",
           REMOTE_DOCUMENTS, proof="reveals", marker=KEY_ARN, refused=200),
    # --- API ---------------------------------------------------------------------------------------------
    Action("list requests shows it", "api:requests", "GET", "/api/v1/requests/", VIEWERS, proof="listed",
           about_the_request=False),
    Action("awaiting my approval shows it", "api:requests", "GET", "/api/v1/requests/?awaiting_my_approval=true",
           frozenset({"approver"}), proof="listed", about_the_request=False),
    Action("file a request", "api:requests", "POST", "/api/v1/requests/", frozenset({"requester"}),
           proof="created", creates=AccessRequest, body=FILE_BODY, about_the_request=False, needs_aws=True),
    Action("request", "api:request-detail", "GET", "/api/v1/requests/{id}/", VIEWERS),
    Action("plan", "api:request-plan", "GET", "/api/v1/requests/{id}/plan/", VIEWERS),
    Action("request reveals the secret's key", "api:request-detail", "GET", "/api/v1/requests/{id}/",
           REMOTE_DOCUMENTS, proof="reveals", marker=KEY_ARN, refused=200),
    Action("plan reveals the secret's key", "api:request-plan", "GET", "/api/v1/requests/{id}/plan/",
           REMOTE_DOCUMENTS, proof="reveals", marker=KEY_ARN, refused=200),
    Action("steps reveal the Remote policies", "api:request-detail", "GET", "/api/v1/requests/{id}/",
           REMOTE_DOCUMENTS, state=S.ACTIVE, proof="reveals", marker=REMOTE_MARKER, refused=200),
    Action("audit events reveal the Remote policies", "api:audit-events", "GET",
           "/api/v1/audit-events/?request={id}", REMOTE_DOCUMENTS, state=S.ACTIVE, proof="reveals",
           marker=REMOTE_MARKER, refused=200, about_the_request=False),
    Action("approve", "api:request-approve", "POST", "/api/v1/requests/{id}/approve/", frozenset({"approver"}),
           proof="moved", to=S.APPROVED, body=SEEN),
    Action("reject", "api:request-reject", "POST", "/api/v1/requests/{id}/reject/", frozenset({"approver"}),
           proof="moved", to=S.REJECTED, body={"comment": "not this one"}),
    Action("cancel", "api:request-cancel", "POST", "/api/v1/requests/{id}/cancel/", frozenset({"requester"}),
           proof="moved", to=S.CANCELLED),
    Action("revoke", "api:request-revoke", "POST", "/api/v1/requests/{id}/revoke/", VIEWERS, state=S.ACTIVE,
           proof="moved", to=S.REVOKING),
    Action("retry", "api:request-retry", "POST", "/api/v1/requests/{id}/retry/", frozenset({"requester", "staff"}),
           state=S.FAILED, proof="moved", to=S.PROVISIONING),
    Action("repair with no drift", "api:request-repair", "POST", "/api/v1/requests/{id}/repair/", frozenset(),
           state=S.ACTIVE, proof="moved", to=S.PROVISIONING, refused=409),
    Action("repair of DataLake drift", "api:request-repair", "POST", "/api/v1/requests/{id}/repair/", VIEWERS,
           state=S.ACTIVE, drift="datalake", proof="moved", to=S.PROVISIONING),
    Action("repair of Remote drift", "api:request-repair", "POST", "/api/v1/requests/{id}/repair/",
           frozenset({"approver", "staff"}), state=S.ACTIVE, drift="remote", proof="moved", to=S.PROVISIONING,
           asks=frozenset({"requester"}), asked="repair.requested"),
    Action("approve the repair", "api:request-repair-approve", "POST", "/api/v1/requests/{id}/repair/approve/",
           frozenset({"approver"}), state=S.ACTIVE, drift="remote", pending_repair=True, proof="moved",
           to=S.PROVISIONING, body=SEEN),
    Action("reject the repair", "api:request-repair-reject", "POST", "/api/v1/requests/{id}/repair/reject/",
           frozenset({"approver"}), state=S.ACTIVE, drift="remote", pending_repair=True, proof="created",
           creates="decision.repair_reject", body={"comment": "removed on purpose"}),
    Action("ask for an extension", "api:request-extend", "POST", "/api/v1/requests/{id}/extend/",
           frozenset({"requester"}), state=S.ACTIVE, proof="created", creates="extension.requested",
           body={**EXTEND_BODY, "expires_at": LATER + ":00Z"}),
    Action("approve the extension", "api:request-extension-approve", "POST",
           "/api/v1/requests/{id}/extension/approve/", frozenset({"approver"}), state=S.ACTIVE,
           pending_extension=True, proof="created", creates="decision.extension_approve", body=SEEN),
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
    Action("rules list the rule", "api:rules", "GET", "/api/v1/rules/", REMOTE_DOCUMENTS, proof="reveals",
           marker=RULE_NAME, refused=200, rule="proposed", about_the_request=False),
    Action("propose a rule", "api:rules", "POST", "/api/v1/rules/", RULE_DECIDERS, proof="created",
           creates="rule.proposed", body=PROPOSE_RULE, about_the_request=False),
    Action("rule", "api:rule-detail", "GET", "/api/v1/rules/{rule}/", REMOTE_DOCUMENTS, rule="proposed",
           refused=404, about_the_request=False),
    Action("approve a rule change", "api:rule-approve", "POST", "/api/v1/rules/{rule}/approve/", RULE_DECIDERS,
           rule="proposed", proof="created", creates="rule.in_force", body={"version": 1}, refused=404,
           refused_as={"staff": 403}, about_the_request=False),
    Action("reject a rule change", "api:rule-reject", "POST", "/api/v1/rules/{rule}/reject/", RULE_DECIDERS,
           rule="proposed", proof="created", creates="rule.rejected", body={"version": 1, "comment": "no"},
           refused=404, refused_as={"staff": 403}, about_the_request=False),
    Action("propose a rule change", "api:rule-change", "POST", "/api/v1/rules/{rule}/change/", RULE_DECIDERS,
           rule="in_force", proof="created", creates="rule.proposed", body=RULE_CRITERIA, refused=404,
           refused_as={"staff": 403}, about_the_request=False),
    Action("propose to disable a rule", "api:rule-disable", "POST", "/api/v1/rules/{rule}/disable/",
           RULE_DECIDERS, rule="in_force", proof="created", creates="rule.proposed", refused=404,
           refused_as={"staff": 403}, about_the_request=False),
    # Multi-grant requests: filed by a requester of the DataLake account; seen, approved once, rejected and
    # revoked as each of their grants would be.
    Action("list multi-grant requests shows it", "api:request-sets", "GET", "/api/v1/request-sets/", VIEWERS,
           proof="listed", about_the_request=False, in_set=True),
    Action("file a multi-grant request", "api:request-sets", "POST", "/api/v1/request-sets/",
           frozenset({"requester"}), proof="created", creates=AccessRequest, about_the_request=False, needs_aws=True,
           body={"datalake_account": "111111111111", "justification": "Two databases.",
                 "grants": [{"secret_arn": SECRET_ARN, "engine": "mysql", "endpoint_identifier": "set-grant-a"},
                            {"secret_arn": SECRET_ARN, "engine": "postgres", "endpoint_identifier": "set-grant-b"}]}),
    Action("multi-grant request", "api:request-set-detail", "GET", "/api/v1/request-sets/{set}/", VIEWERS,
           in_set=True),
    Action("multi-grant plan", "api:request-set-plan", "GET", "/api/v1/request-sets/{set}/plan/", VIEWERS,
           in_set=True),
    Action("multi-grant plan reveals the secret's key", "api:request-set-plan", "GET",
           "/api/v1/request-sets/{set}/plan/", REMOTE_DOCUMENTS, proof="reveals", marker=KEY_ARN, refused=200,
           in_set=True),
    Action("approve a multi-grant request", "api:request-set-approve", "POST", "/api/v1/request-sets/{set}/approve/",
           frozenset({"approver"}), proof="moved", to=S.APPROVED, body=SEEN, in_set=True),
    Action("approve a grant of a multi-grant request alone", "api:request-approve", "POST",
           "/api/v1/requests/{id}/approve/", frozenset(), proof="moved", to=S.APPROVED, body=SEEN, in_set=True,
           refused_as={"approver": 409}),
    Action("reject a multi-grant request", "api:request-set-reject", "POST", "/api/v1/request-sets/{set}/reject/",
           frozenset({"approver"}), proof="moved", to=S.REJECTED, body={"comment": "not these"}, in_set=True),
    Action("revoke a multi-grant request", "api:request-set-revoke", "POST", "/api/v1/request-sets/{set}/revoke/",
           VIEWERS, state=S.ACTIVE, proof="moved", to=S.REVOKING, in_set=True),
    # Which rule approved a request: whoever sees the request.
    Action("rules that approved the request", "api:request-rule-decisions", "GET",
           "/api/v1/requests/{id}/rule-decisions/", VIEWERS),
    Action("register an account", "api:accounts", "POST", "/api/v1/accounts/", frozenset({"staff"}),
           proof="created", creates=AwsAccount, body=REGISTER_BODY, about_the_request=False),
    Action("change an account's members", "api:account-detail", "PATCH", "/api/v1/accounts/222222222222/",
           frozenset({"staff"}), proof="created", creates="account.members_changed",
           body={"approvers": ["approver", "other.approver"]}, about_the_request=False),
    Action("list my API tokens", "api:tokens", "GET", "/api/v1/tokens/", SIGNED_IN, about_the_request=False),
    Action("make an API token", "api:tokens", "POST", "/api/v1/tokens/", SIGNED_IN, proof="created",
           creates="token.created", body={"name": "from the API"}, session_only=True, about_the_request=False),
    Action("revoke the requester's token", "api:token-detail", "DELETE", "/api/v1/tokens/{token}/",
           frozenset({"requester", "staff"}), proof="created", creates="token.revoked", token_of="requester",
           refused=404, about_the_request=False),
    # --- signed by Slack, not a session route: no session, token or CSRF token is a signature -------------
    Action("Slack button press without Slack's signature", "slack_interactions", "POST", "/slack/interactions",
           frozenset(), proof="moved", to=S.APPROVED, body={"payload": SLACK_APPROVE}, refused=401,
           about_the_request=False),
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
    if action.drift:
        request.drift = DRIFT[action.drift]
        request.save(update_fields=["drift"])
    if action.pending_repair:
        access_request_repair(request_id=request.pk, user=people["requester"])
    if action.marker == REMOTE_MARKER:
        ProvisioningStep.objects.create(
            request=request, phase="grant", name="grant_secret_policy", position=2, status="succeeded",
            before=REMOTE_POLICY, after=REMOTE_POLICY,
        )
        with transaction.atomic():
            record_event(action="aws.grant_secret_policy", request=request, target_arn=SECRET_ARN,
                         details={"phase": "grant", "step": "grant_secret_policy", "before": REMOTE_POLICY})
    if action.pending_extension:
        access_request_extend(
            request_id=request.pk, user=people["requester"], expires_at=timezone.now() + timedelta(days=60)
        )
    if action.in_set:
        request.request_set = RequestSet.objects.create(
            requester=request.requester, datalake_account=request.datalake_account,
            remote_account=request.remote_account, justification=request.justification,
        )
        request.save(update_fields=["request_set"])
    if action.rule:
        request.rule_id = _rule(action.rule, people, site)
    if action.token_of:
        token, _ = ApiToken.objects.create(user=people[action.token_of], name="the one", expiry=timedelta(days=7))
        request.token_id = token.pk
    return request


def _rule(state: str, people: dict, site: dict) -> int:
    """A rule of the Remote account, proposed by an approver other than ``approver`` (and, for
    "in_force", approved by a third), so that ``approver`` may decide it."""
    proposer, seconder = (get_user_model().objects.create_user(name) for name in ("rule.proposer", "rule.seconder"))
    site["remote"].approvers.add(proposer, seconder)
    version = rule_propose(user=proposer, account_id=site["remote"].account_id, name=RULE_NAME, **RULE_CRITERIA)
    if state == "in_force":
        rule_version_approve(rule_id=version.rule_id, user=seconder, version=version.number)
    return version.rule_id


def body_for(action: Action, request: AccessRequest) -> dict:
    """The row's body for ``request`` (an approval names the request's current plan)."""
    if "payload" in action.body:  # JSON: its braces are not format fields
        return {"payload": action.body["payload"].replace("{id}", str(request.pk)).replace("{plan_hash}", request.plan_hash)}
    seen = request.plan_hash
    if action.in_set and action.route.startswith(("api:request-set", "web:request_set")):
        seen = set_plan_hash(awaiting_grants(request.request_set))  # the set's one plan
    return {key: value.format(plan_hash=seen) if key == "plan_hash" else value for key, value in action.body.items()}
