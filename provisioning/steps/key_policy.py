"""Steps on the Remote side: the grant's statement in the KMS key policy."""

from __future__ import annotations

import fnmatch
import json

from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import key_policy_statement
from provisioning.errors import InvalidInput
from provisioning.resources import KEY_POLICY_NAME, read_key_policy, resolve_key_arn
from provisioning.spec import GrantSpec
from provisioning.statements import find_statement, merge_statement, remove_statement, statements_of
from provisioning.steps.result import PolicyLock, StepResult, locked


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _allows_key_administration(statement) -> bool:
    # Whoever may call PutKeyPolicy administers the key (the root statement
    # "kms:*" above all); losing every such statement locks the key owner out.
    if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
        return False
    target = "kms:putkeypolicy"
    if "Action" in statement:
        return any(fnmatch.fnmatchcase(target, str(a).lower()) for a in _as_list(statement["Action"]))
    if "NotAction" in statement:
        return not any(fnmatch.fnmatchcase(target, str(a).lower()) for a in _as_list(statement["NotAction"]))
    return False


def _ensure_administration_kept(calls: AwsCalls, before: dict | None, after: dict | None, key_arn: str) -> None:
    kept = statements_of(after)
    lost = [s for s in statements_of(before) if _allows_key_administration(s) and s not in kept]
    if lost:
        sids = ", ".join(str(s.get("Sid", "(no Sid)")) for s in lost)
        raise calls.permanent(
            f"Refusing to change the key policy of {key_arn}: the result would drop the statement(s) {sids} "
            "that let the key's owner administer it. Check the key policy by hand.",
            diagnosis="key_not_usable",
        )


def _put(calls: AwsCalls, kms, key_arn: str, policy: dict) -> None:
    # BypassPolicyLockoutSafetyCheck stays at its default (false): KMS itself
    # then refuses a policy that would lock the caller out.
    calls(kms, "PutKeyPolicy", KeyId=key_arn, PolicyName=KEY_POLICY_NAME, Policy=json.dumps(policy))


def grant_key_policy(spec: GrantSpec, *, clients: GrantClients, lock: PolicyLock | None = None) -> StepResult:
    """Merge the grant's statement (runbook document 3) into the key policy.

    Runs with the Remote account's credentials (key policies are not
    cross-account), under ``lock(key_arn)``. Every other statement, above all
    the root statement, is kept; a merge that would lose a statement letting
    the owner administer the key is refused. Nothing is written when the
    statement is already there as planned. Outputs ``key_arn``.
    """
    if not spec.kms_key_arn:
        raise InvalidInput("kms_key_arn", "is required to grant on the key (preflight discovers it from the secret)")
    calls = AwsCalls()
    kms = clients.remote("kms")
    statement = key_policy_statement(spec)
    key_arn = resolve_key_arn(calls, kms, spec.kms_key_arn)
    with locked(lock, key_arn):
        _, current = read_key_policy(calls, kms, key_arn)
        merged = merge_statement(current, statement)
        if merged == current:
            return StepResult(
                name="grant_key_policy",
                changed=False,
                before=current,
                after=current,
                aws_request_ids=calls.request_ids,
                aws_calls=calls.calls,
                outputs={"key_arn": key_arn},
            )
        _ensure_administration_kept(calls, current, merged, key_arn)
        calls.check_size("key_policy", merged)
        _put(calls, kms, key_arn, merged)
    return StepResult(
        name="grant_key_policy",
        changed=True,
        before=current,
        after=merged,
        aws_request_ids=calls.request_ids,
        aws_calls=calls.calls,
        outputs={"key_arn": key_arn},
    )


def revoke_key_policy(spec: GrantSpec, *, clients: GrantClients, lock: PolicyLock | None = None) -> StepResult:
    """Remove exactly the grant's statement from the key policy and put the rest back.

    A missing key or statement is success. A key policy that would be left
    without statements is refused (a key cannot be left without a policy).
    """
    calls = AwsCalls()
    kms = clients.remote("kms")
    sid = spec.statement_sid
    # A grant that never got as far as knowing its key has no statement in one.
    key_arn = resolve_key_arn(calls, kms, spec.kms_key_arn, missing_ok=True) if spec.kms_key_arn else None
    if key_arn is None:
        return StepResult(
            name="revoke_key_policy", changed=False, aws_request_ids=calls.request_ids, aws_calls=calls.calls
        )
    with locked(lock, key_arn):
        exists, current = read_key_policy(calls, kms, key_arn, missing_ok=True)
        if not exists or find_statement(current, sid) is None:
            return StepResult(
                name="revoke_key_policy",
                changed=False,
                before=current,
                after=current,
                aws_request_ids=calls.request_ids,
                aws_calls=calls.calls,
                outputs={"key_arn": key_arn},
            )
        remaining = remove_statement(current, sid)
        if remaining is None:
            raise calls.permanent(
                f"The key policy of {key_arn} holds only this grant's statement; removing it would leave the key "
                "without a policy. Restore the key's administrator statement by hand.",
                diagnosis="key_not_usable",
            )
        _ensure_administration_kept(calls, current, remaining, key_arn)
        _put(calls, kms, key_arn, remaining)
    return StepResult(
        name="revoke_key_policy",
        changed=True,
        before=current,
        after=remaining,
        aws_request_ids=calls.request_ids,
        aws_calls=calls.calls,
        outputs={"key_arn": key_arn},
    )
