"""Writing a merged policy with the lost-update window kept as narrow as AWS allows.

The workers serialise their own edits of one policy with a lock, but a person
editing the same policy in the AWS console is not party to it, and neither
Secrets Manager nor KMS offers a conditional put. So the write:

1. reads the policy and computes the change (merge or remove) on what it read;
2. puts;
3. reads back and checks that the change holds and that every statement that
   was there before the put is still there. A change that another writer's
   put (based on an older read) undid is made again on the new text (at most
   ``MAX_MERGE_TRIES`` merges before giving up, retryably); a statement
   missing afterwards is reported, never put back: once the portal's put
   landed, only someone else removed it, and on purpose as far as the portal
   can tell.

What remains is the time between the read and the put (one round trip): an
edit saved in exactly that moment is overwritten and cannot be detected. A
second read right before the put would not narrow it: nothing but the merge,
which takes no time, separates the first read from the put, so the window
would only move from after the first read to after the second, one round trip
either way, and every write would pay a read for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from provisioning.aws_calls import AwsCalls
from provisioning.ownership import owned_sids
from provisioning.spec import GrantSpec
from provisioning.statements import merge_statement, statements_of

logger = logging.getLogger(__name__)

MAX_MERGE_TRIES = 3


@dataclass
class PolicyWrite:
    """What a guarded write did: the policy as the change was based on, as written, and as read back."""

    before: dict | None
    after: dict | None
    changed: bool
    merges: int = 1
    missing_after_put: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Companion:
    """Another grant of the same request set whose statement goes into (or,
    for a revoke, out of) the same write: its spec, and for a revoke the
    targets its grant recorded (``{"arn", "sid"}``)."""

    spec: GrantSpec
    written: tuple[Mapping, ...] = ()


Companions = Callable[[], Sequence[Companion]]


def merge_all(current: dict | None, changes: Sequence[tuple[dict, Collection[str]]]) -> dict | None:
    """``current`` with each ``(statement, replaces)`` merged in turn (``statements.merge_statement``)."""
    for statement, replaces in changes:
        current = merge_statement(current, statement, replaces=replaces)
    return current


def companions_of(companions: Companions | None, spec: GrantSpec) -> list[Companion]:
    """The grants whose statements go into the same write as ``spec``'s (asked
    for under the policy's lock: a grant revoked meanwhile is not among them)."""
    if companions is None:
        return []
    return [other for other in companions() if other.spec.grant_id != spec.grant_id]


def sids_on(spec: GrantSpec, written: Sequence[Mapping], arn: str) -> list[str]:
    """The Sids a revoke of ``spec`` removes from the policy of ``arn``: those
    its grant recorded there, and its own. Only Sids this instance owns: a
    restored copy of the database (another instance) holds the original's
    records, and must not act on them."""
    owned = owned_sids(spec)
    recorded = [target["sid"] for target in written if target.get("arn") == arn and target.get("sid") in owned]
    return list(dict.fromkeys([*recorded, *owned]))


def removed_companions(write: PolicyWrite, removed: Sequence[tuple[Companion, list[str]]]) -> dict:
    """The revoke step's ``companions`` output: the companions whose statements its put removed."""
    if not write.changed:
        return {}
    there = {statement.get("Sid") for statement in statements_of(write.before) if isinstance(statement, dict)}
    gone = [
        {"grant_id": other.spec.grant_id, "sids": [sid for sid in sids if sid in there]}
        for other, sids in removed
        if there & set(sids)
    ]
    return {"companions": gone} if gone else {}


def companion_outputs(write: PolicyWrite, merged: Sequence[tuple[GrantSpec, dict]]) -> dict:
    """The step's ``companions`` output: the companions' statements its put
    wrote (not those that were already there as planned)."""
    if not write.changed:
        return {}
    there = statements_of(write.before)
    written = [
        {"grant_id": other.grant_id, "sid": statement["Sid"], "document": statement}
        for other, statement in merged
        if statement not in there
    ]
    return {"companions": written} if written else {}


def _missing(before: dict | None, after: dict | None, *, own_sids: Collection[str]) -> list[dict]:
    kept = statements_of(after)
    return [
        statement
        for statement in statements_of(before)
        if statement not in kept and not (isinstance(statement, dict) and statement.get("Sid") in own_sids)
    ]


def write_policy(
    calls: AwsCalls,
    *,
    what: str,
    own_sids: Collection[str],
    read: Callable[[], dict | None],
    change: Callable[[dict | None], dict | None],
    check: Callable[[dict | None, dict | None], None],
    put: Callable[[dict | None, dict | None], None],
    max_tries: int = MAX_MERGE_TRIES,
) -> PolicyWrite:
    """Apply ``change`` to the policy ``read`` returns, ``put`` the result and read it back.

    ``own_sids`` are the Sids the change itself replaces or removes.
    ``change(current)`` returns the desired policy (equal to ``current`` when
    nothing is to be done); ``check(current, desired)`` raises when the
    desired policy may not be written (size limits, lock-out); ``put(current,
    desired)`` writes it. Raises ``RetryableAwsError`` (diagnosis
    ``policy_changed_concurrently``) when another writer undid the change
    right after each of ``max_tries`` puts.
    """
    base = read()
    merges = 0
    for _ in range(max_tries):
        desired = change(base)
        merges += 1
        if desired == base:
            return PolicyWrite(before=base, after=base, changed=False, merges=merges)
        check(base, desired)
        put(base, desired)
        written = read()
        missing = _missing(base, written, own_sids=own_sids)
        if missing:
            logger.warning(
                "statement(s) %s of the %s were gone right after the portal's put; someone else removed them",
                ", ".join(str(s.get("Sid", "(no Sid)")) for s in missing if isinstance(s, dict)),
                what,
            )
        if change(written) == written:
            return PolicyWrite(before=base, after=written, changed=True, merges=merges, missing_after_put=missing)
        # Another writer's put, based on a read older than ours, undid the change.
        logger.warning("the portal's change to the %s was overwritten right after its put; merging again", what)
        base = written
    raise calls.retryable(
        f"The {what} kept changing while the portal merged into it ({max_tries} tries); the retry reads it again",
        diagnosis="policy_changed_concurrently",
    )
