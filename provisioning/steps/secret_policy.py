"""Steps on the Remote side: the grant's statement in the secret's resource policy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import secret_policy_statement
from provisioning.resources import read_secret_policy
from provisioning.spec import GrantSpec
from provisioning.ownership import owned_sids
from provisioning.statements import find_owned_statement, remove_statement
from provisioning.steps.policy_write import (
    Companions,
    PolicyWrite,
    companion_outputs,
    companions_of,
    merge_all,
    removed_companions,
    sids_on,
    write_policy,
)
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


def _target(spec: GrantSpec, sid: str, statement: dict | None) -> dict:
    return {"arn": spec.secret_arn, "sid": sid, "document": statement}


def grant_secret_policy(
    spec: GrantSpec, *, clients: GrantClients, lock: PolicyLock | None = None, companions: Companions | None = None
) -> StepResult:
    """Merge the grant's statement (runbook document 2) into the secret's resource policy.

    The policy is read, merged and written under ``lock(secret_arn)`` so
    concurrent grants on one secret cannot lose each other's statement, and
    through ``write_policy`` so an edit made outside the portal meanwhile is
    merged with rather than overwritten. Only the statement with the grant's
    Sid is replaced or appended; nothing is written when it is already there
    as planned. ``BlockPublicPolicy`` is always on. Outputs ``target``: the
    secret ARN, the Sid and the statement written.

    ``companions()``, asked under the lock, names other grants (of one
    multi-grant request) on the same secret: their statements are merged in
    the same put, and reported as ``companions``.
    """
    calls = AwsCalls()
    secretsmanager = clients.remote("secretsmanager")
    statement = secret_policy_statement(spec)
    with locked(lock, spec.secret_arn):
        others = [(other.spec, secret_policy_statement(other.spec)) for other in companions_of(companions, spec)]
        changes = [(statement, owned_sids(spec)), *((doc, owned_sids(other)) for other, doc in others)]
        write = write_policy(
            calls,
            what=f"resource policy of {spec.secret_arn}",
            own_sids={sid for other in (spec, *(o for o, _ in others)) for sid in owned_sids(other)},
            read=lambda: read_secret_policy(calls, secretsmanager, spec.secret_arn)[1],
            change=lambda current: merge_all(current, changes),
            check=lambda current, desired: calls.check_size("secret_policy", desired),
            put=lambda current, desired: _put(calls, secretsmanager, spec.secret_arn, desired),
        )
    return StepResult(
        name="grant_secret_policy",
        changed=write.changed,
        before=write.before,
        after=write.after,
        aws_request_ids=calls.request_ids, aws_calls=calls.calls,
        outputs=_outputs(
            write, target=_target(spec, statement["Sid"], statement),
            **companion_outputs(write, others),
        ),
    )


def _outputs(write: PolicyWrite, **outputs) -> dict:
    if write.missing_after_put:
        outputs["missing_after_put"] = write.missing_after_put
    if write.merges > 1:
        outputs["merges"] = write.merges
    return outputs


def revoke_secret_policy(
    spec: GrantSpec,
    *,
    clients: GrantClients,
    lock: PolicyLock | None = None,
    written: Sequence[Mapping] = (),
    companions: Companions | None = None,
) -> StepResult:
    """Remove exactly the grant's statement from the secret's resource policy.

    ``written`` are the targets the grant recorded (``{"arn", "sid"}``): each
    recorded Sid is removed, and the spec's own Sid too (a grant recorded
    before targets were). A policy left without statements is deleted rather
    than put empty. A missing secret, policy or statement is success.
    ``companions()``, asked under the lock, names other grants of its request
    set being revoked from the same secret: their statements go in the same put.
    """
    calls = AwsCalls()
    secretsmanager = clients.remote("secretsmanager")
    sids = sids_on(spec, written, spec.secret_arn)

    def put(current: dict | None, desired: dict | None) -> None:
        if desired is None:
            calls(secretsmanager, "DeleteResourcePolicy", missing_ok=True, SecretId=spec.secret_arn)
        else:
            _put(calls, secretsmanager, spec.secret_arn, desired)

    with locked(lock, spec.secret_arn):
        others = [(other, sids_on(other.spec, other.written, spec.secret_arn)) for other in companions_of(companions, spec)]
        removed = [*sids, *(sid for _, theirs in others for sid in theirs)]

        def change(current: dict | None) -> dict | None:
            return current if find_owned_statement(current, removed) is None else remove_statement(current, removed)

        write = write_policy(
            calls,
            what=f"resource policy of {spec.secret_arn}",
            own_sids=set(removed),
            read=lambda: read_secret_policy(calls, secretsmanager, spec.secret_arn, missing_ok=True)[1],
            change=change,
            check=lambda current, desired: None,
            put=put,
        )
    return StepResult(
        name="revoke_secret_policy",
        changed=write.changed,
        before=write.before,
        after=write.after,
        aws_request_ids=calls.request_ids, aws_calls=calls.calls,
        outputs=_outputs(
            write, targets=[{"arn": spec.secret_arn, "sid": sid} for sid in sids], **removed_companions(write, others)
        ),
    )
