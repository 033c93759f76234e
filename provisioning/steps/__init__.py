"""The provisioning steps of a grant and of its revoke; their graph is ``provisioning.steps.table``.

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
from provisioning.steps import table

# (name, function) of each phase's engine steps in the graph's order, from
# the step table (provisioning.steps.table); preflight, a check rather than a
# change, is left out.
GRANT_STEPS = tuple((s.name, s.function) for s in table.steps_of(table.GRANT) if s.name != table.PREFLIGHT)
REVOKE_STEPS = tuple((s.name, s.function) for s in table.steps_of(table.REVOKE))

__all__ = [
    "GRANT_STEPS",
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
