"""Every write the portal makes goes through one of these services.

Each takes keyword arguments, runs in one transaction with its audit event,
checks permissions itself (whatever the caller checked before), and queues
work for the workers only after the commit.
"""
from requests_app.services.accounts import account_external_id_set, account_members_set, account_register
from requests_app.services.api_tokens import api_token_create, api_token_revoke
from requests_app.services.decisions import access_request_approve, access_request_reject
from requests_app.services.drift import grant_check_drift, grant_drift_record
from requests_app.services.expiry import (
    access_request_extend,
    access_request_extension_approve,
    access_request_extension_reject,
    remind_expiring_grants,
)
from requests_app.services.logins import login_lockout_reset
from requests_app.services.lifecycle import (
    access_request_cancel,
    access_request_expire,
    access_request_retry,
    access_request_revoke,
)
from requests_app.services.sso import sso_identity_remove, sso_identity_save, sso_login
from requests_app.services.repair import (
    access_request_repair,
    access_request_repair_approve,
    access_request_repair_reject,
)
from requests_app.services.request_sets import request_set_approve, request_set_reject, request_set_revoke, request_set_submit
from requests_app.services.rules import (
    request_match_rules,
    rule_change_propose,
    rule_disable_propose,
    rule_propose,
    rule_version_approve,
    rule_version_reject,
)
from requests_app.services.slack import account_slack_channel_set, slack_identity_remove, slack_identity_save
from requests_app.services.submission import access_request_refresh_preflight, access_request_submit

__all__ = [
    "account_external_id_set",
    "account_members_set",
    "account_register",
    "account_slack_channel_set",
    "api_token_create",
    "api_token_revoke",
    "access_request_approve",
    "access_request_cancel",
    "access_request_expire",
    "access_request_extend",
    "access_request_extension_approve",
    "access_request_extension_reject",
    "access_request_repair",
    "access_request_repair_approve",
    "access_request_repair_reject",
    "access_request_refresh_preflight",
    "access_request_reject",
    "access_request_retry",
    "access_request_revoke",
    "access_request_submit",
    "grant_check_drift",
    "login_lockout_reset",
    "grant_drift_record",
    "remind_expiring_grants",
    "request_match_rules",
    "request_set_approve",
    "request_set_reject",
    "request_set_revoke",
    "request_set_submit",
    "rule_change_propose",
    "rule_disable_propose",
    "rule_propose",
    "rule_version_approve",
    "rule_version_reject",
    "slack_identity_remove",
    "slack_identity_save",
    "sso_identity_remove",
    "sso_identity_save",
    "sso_login",
]
