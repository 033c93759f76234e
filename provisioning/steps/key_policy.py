"""Steps on the Remote side: the grant's statement in the KMS key policy."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence

from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import key_policy_statement
from provisioning.errors import InvalidInput
from provisioning.resources import KEY_POLICY_NAME, read_key_policy, resolve_key_arn
from provisioning.spec import GrantSpec
from provisioning.ownership import owned_sids
from provisioning.statements import find_owned_statement, remove_statement, statements_of
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


def _checked(calls: AwsCalls, key_arn: str, *, grant: bool):
    def check(current: dict | None, desired: dict | None) -> None:
        if desired is None:
            raise calls.permanent(
                f"The key policy of {key_arn} holds only this grant's statement; removing it would leave the key "
                "without a policy. Restore the key's administrator statement by hand.",
                diagnosis="key_not_usable",
            )
        _ensure_administration_kept(calls, current, desired, key_arn)
        if grant:
            calls.check_size("key_policy", desired)

    return check


def _write(calls: AwsCalls, kms, key_arn: str, *, own_sids: set[str], change, grant: bool) -> PolicyWrite:
    return write_policy(
        calls,
        what=f"key policy of {key_arn}",
        own_sids=own_sids,
        read=lambda: read_key_policy(calls, kms, key_arn, missing_ok=not grant)[1],
        change=change,
        check=_checked(calls, key_arn, grant=grant),
        put=lambda current, desired: _put(calls, kms, key_arn, desired),
    )


def _outputs(write: PolicyWrite, **outputs) -> dict:
    if write.missing_after_put:
        outputs["missing_after_put"] = write.missing_after_put
    if write.merges > 1:
        outputs["merges"] = write.merges
    return outputs


def grant_key_policy(
    spec: GrantSpec, *, clients: GrantClients, lock: PolicyLock | None = None, companions: Companions | None = None
) -> StepResult:
    """Merge the grant's statement (runbook document 3) into the key policy.

    Runs with the Remote account's credentials (key policies are not
    cross-account), under ``lock(key_arn)`` and through ``write_policy`` (an
    edit made outside the portal meanwhile is merged with, not overwritten).
    Every other statement, above all the root statement, is kept; a merge
    that would lose a statement letting the owner administer the key is
    refused. Nothing is written when the statement is already there as
    planned. Outputs ``key_arn`` and ``target``: the key ARN, the Sid and the
    statement written.

    ``companions()``, asked under the lock, names other grants (of one
    multi-grant request) on the same key: their statements are merged in the
    same put, and reported as ``companions``.
    """
    if not spec.kms_key_arn:
        raise InvalidInput("kms_key_arn", "is required to grant on the key (preflight discovers it from the secret)")
    calls = AwsCalls()
    kms = clients.remote("kms")
    statement = key_policy_statement(spec)
    key_arn = resolve_key_arn(calls, kms, spec.kms_key_arn)
    with locked(lock, key_arn):
        others = [(other.spec, key_policy_statement(other.spec)) for other in companions_of(companions, spec)]
        changes = [(statement, owned_sids(spec)), *((doc, owned_sids(other)) for other, doc in others)]
        write = _write(
            calls, kms, key_arn, own_sids={sid for other in (spec, *(o for o, _ in others)) for sid in owned_sids(other)},
            change=lambda current: merge_all(current, changes), grant=True,
        )  # fmt: skip
    return StepResult(
        name="grant_key_policy",
        changed=write.changed,
        before=write.before,
        after=write.after,
        aws_request_ids=calls.request_ids, aws_calls=calls.calls,
        outputs=_outputs(
            write, key_arn=key_arn, target={"arn": key_arn, "sid": statement["Sid"], "document": statement},
            **companion_outputs(write, others),
        ),
    )


def _revoke_one(
    calls: AwsCalls, kms, key_arn: str, sids: list[str], lock: PolicyLock | None, companions=lambda: ()
) -> tuple[PolicyWrite, list]:
    """Remove ``sids`` from the policy of ``key_arn``, and the statements of
    the ``companions()`` revoked with it (asked under the lock)."""
    with locked(lock, key_arn):
        others = [(other, sids_on(other.spec, other.written, key_arn)) for other in companions()]
        removed = [*sids, *(sid for _, theirs in others for sid in theirs)]

        def change(current: dict | None) -> dict | None:
            return current if find_owned_statement(current, removed) is None else remove_statement(current, removed)

        return _write(calls, kms, key_arn, own_sids=set(removed), change=change, grant=False), others


def revoke_key_policy(
    spec: GrantSpec,
    *,
    clients: GrantClients,
    lock: PolicyLock | None = None,
    written: Sequence[Mapping] = (),
    companions: Companions | None = None,
) -> StepResult:
    """Remove exactly the grant's statements from the key policies it wrote, and put the rest back.

    ``written`` are the targets the grant recorded (``{"arn", "sid"}``): each
    recorded key loses its recorded Sid, even when the secret has since moved
    to another key; the spec's key (when known) loses the spec's Sid too, for
    a grant recorded before targets were. A missing key or statement is
    success. A key policy that would be left without statements is refused
    (a key cannot be left without a policy). ``companions()``, asked under
    the lock of the spec's key, names other grants of its request set being
    revoked from that key: their statements go in the same put.
    """
    calls = AwsCalls()
    kms = clients.remote("kms")
    by_key: dict[str, list[str]] = {}
    # Only Sids this instance owns: a restored copy of the database (another
    # instance) holds the original's records, and must not act on them.
    owned = set(owned_sids(spec))
    for target in written:
        if target.get("arn") and target.get("sid") in owned:
            by_key.setdefault(target["arn"], [])
            if target["sid"] not in by_key[target["arn"]]:
                by_key[target["arn"]].append(target["sid"])
    # A grant that never got as far as knowing its key has no statement in one.
    key_arn = resolve_key_arn(calls, kms, spec.kms_key_arn, missing_ok=True) if spec.kms_key_arn else None
    if key_arn is not None:
        by_key.setdefault(key_arn, [])
        for sid in owned_sids(spec):
            if sid not in by_key[key_arn]:
                by_key[key_arn].append(sid)
    if not by_key:
        return StepResult(name="revoke_key_policy", changed=False, aws_request_ids=calls.request_ids, aws_calls=calls.calls)
    outcomes = {
        arn: _revoke_one(
            calls, kms, arn, sids, lock,
            **({"companions": lambda: companions_of(companions, spec)} if arn == key_arn else {}),
        )
        for arn, sids in by_key.items()
    }  # fmt: skip
    results = {arn: write for arn, (write, _) in outcomes.items()}
    changed = [arn for arn, write in results.items() if write.changed]
    # The step's before/after show the key that changed (the plan's key when none or several did).
    shown = changed[0] if len(changed) == 1 else (key_arn or next(iter(results)))
    outputs = _outputs(results[shown], key_arn=shown)
    if key_arn is not None:
        outputs.update(removed_companions(results[key_arn], outcomes[key_arn][1]))
    outputs["targets"] = [
        {"arn": arn, "sids": by_key[arn], "changed": write.changed, "before": write.before, "after": write.after}
        for arn, write in results.items()
    ]
    return StepResult(
        name="revoke_key_policy",
        changed=bool(changed),
        before=results[shown].before,
        after=results[shown].after,
        aws_request_ids=calls.request_ids, aws_calls=calls.calls,
        outputs=outputs,
    )
