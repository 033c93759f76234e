"""Steps on the Remote side: the grant's statement in the secret's resource policy."""

from __future__ import annotations

import json

from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import secret_policy_statement
from provisioning.resources import read_secret_policy
from provisioning.spec import GrantSpec
from provisioning.statements import find_statement, merge_statement, remove_statement
from provisioning.steps.result import PolicyLock, StepResult, locked


def _put(calls: AwsCalls, secretsmanager, secret_arn: str, policy: dict) -> None:
    # A role created seconds ago can be refused here as an "unsupported
    # principal"; aws_errors turns that into a retryable principal_not_visible.
    calls(
        secretsmanager,
        "PutResourcePolicy",
        SecretId=secret_arn,
        ResourcePolicy=json.dumps(policy),
        BlockPublicPolicy=True,
    )


def grant_secret_policy(spec: GrantSpec, *, clients: GrantClients, lock: PolicyLock | None = None) -> StepResult:
    """Merge the grant's statement (runbook document 2) into the secret's resource policy.

    The policy is read, merged and written under ``lock(secret_arn)`` so
    concurrent grants on one secret cannot lose each other's statement. Only
    the statement with the grant's Sid is replaced or appended; nothing is
    written when it is already there as planned. ``BlockPublicPolicy`` is
    always on.
    """
    calls = AwsCalls()
    secretsmanager = clients.remote("secretsmanager")
    statement = secret_policy_statement(spec)
    with locked(lock, spec.secret_arn):
        _, current = read_secret_policy(calls, secretsmanager, spec.secret_arn)
        merged = merge_statement(current, statement)
        if merged == current:
            return StepResult(
                name="grant_secret_policy",
                changed=False,
                before=current,
                after=current,
                aws_request_ids=calls.request_ids,
                aws_calls=calls.calls,
            )
        calls.check_size("secret_policy", merged)
        _put(calls, secretsmanager, spec.secret_arn, merged)
    return StepResult(
        name="grant_secret_policy", changed=True, before=current, after=merged, aws_request_ids=calls.request_ids,
        aws_calls=calls.calls,
    )


def revoke_secret_policy(spec: GrantSpec, *, clients: GrantClients, lock: PolicyLock | None = None) -> StepResult:
    """Remove exactly the grant's statement from the secret's resource policy.

    A policy left without statements is deleted rather than put empty. A
    missing secret, policy or statement is success.
    """
    calls = AwsCalls()
    secretsmanager = clients.remote("secretsmanager")
    sid = spec.statement_sid
    with locked(lock, spec.secret_arn):
        exists, current = read_secret_policy(calls, secretsmanager, spec.secret_arn, missing_ok=True)
        if not exists or find_statement(current, sid) is None:
            return StepResult(
                name="revoke_secret_policy",
                changed=False,
                before=current,
                after=current,
                aws_request_ids=calls.request_ids,
                aws_calls=calls.calls,
            )
        remaining = remove_statement(current, sid)
        if remaining is None:
            calls(secretsmanager, "DeleteResourcePolicy", missing_ok=True, SecretId=spec.secret_arn)
        else:
            _put(calls, secretsmanager, spec.secret_arn, remaining)
    return StepResult(
        name="revoke_secret_policy", changed=True, before=current, after=remaining, aws_request_ids=calls.request_ids,
        aws_calls=calls.calls,
    )
