"""The provisioning steps of a grant, in the runbook's order, and their reverse.

Each step is idempotent: it reads the current state, computes the desired
state from ``provisioning.documents``, writes only the difference and returns
a ``StepResult``. Steps raise ``RetryableAwsError`` or ``PermanentAwsError``
(with a diagnosis), never bare botocore errors.
"""
from __future__ import annotations

from provisioning.preflight import Check, PreflightReport, preflight
from provisioning.steps.endpoint import create_endpoint, delete_endpoint
from provisioning.steps.key_policy import grant_key_policy, revoke_key_policy
from provisioning.steps.result import PolicyLock, StepResult
from provisioning.steps.role import create_role, delete_role
from provisioning.steps.secret_policy import grant_secret_policy, revoke_secret_policy
from provisioning.steps.verify import verify

GRANT_STEPS = (
    ("create_role", create_role),
    ("grant_secret_policy", grant_secret_policy),
    ("grant_key_policy", grant_key_policy),
    ("create_endpoint", create_endpoint),
    ("verify", verify),
)
REVOKE_STEPS = (
    ("delete_endpoint", delete_endpoint),
    ("revoke_key_policy", revoke_key_policy),
    ("revoke_secret_policy", revoke_secret_policy),
    ("delete_role", delete_role),
)
# Steps that read-merge-write a policy shared with other grants: the portal
# passes them ``lock=``.
LOCKED_STEPS = frozenset({"grant_secret_policy", "grant_key_policy", "revoke_secret_policy", "revoke_key_policy"})

__all__ = [
    "GRANT_STEPS",
    "LOCKED_STEPS",
    "REVOKE_STEPS",
    "Check",
    "PolicyLock",
    "PreflightReport",
    "StepResult",
    "create_endpoint",
    "create_role",
    "delete_endpoint",
    "delete_role",
    "grant_key_policy",
    "grant_secret_policy",
    "preflight",
    "revoke_key_policy",
    "revoke_secret_policy",
    "verify",
]
