"""Merging the portal's statements into policies it shares with others, and size limits.

The portal owns exactly the statements whose Sid it generated for a grant
(see provisioning.ownership). Merge replaces that statement or appends it;
remove deletes exactly that Sid (or those Sids: a grant's statement of
before instance ids had another Sid).
Every other statement, its content and its position, and every other top-level
key (Version, Id) are left as they were. A ``Statement`` given as one object
(which AWS accepts) is returned as a list: the list form means the same and
lets statements be added.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable

from provisioning.errors import PermanentAwsError

POLICY_VERSION = "2012-10-17"

KEY_POLICY_MAX_BYTES = 32768
SECRET_POLICY_MAX_CHARS = 20480
ROLE_INLINE_POLICIES_MAX_CHARS = 10240  # non-whitespace, all inline policies of a role together
TRUST_POLICY_MAX_CHARS = 2048  # non-whitespace, the default quota

POLICY_KINDS = ("key_policy", "secret_policy", "role_inline_policies", "trust_policy")


def _load(policy: dict | str | None) -> dict | None:
    if policy is None:
        return None
    if isinstance(policy, str):
        # GetResourcePolicy and GetKeyPolicy return the document as text.
        policy = json.loads(policy) if policy.strip() else None
        if policy is None:
            return None
    if not isinstance(policy, dict):
        raise ValueError(f"a policy must be a JSON object, got {type(policy).__name__}")
    return copy.deepcopy(policy)


def statements_of(policy: dict | str | None) -> list[dict]:
    """The statements of ``policy`` as a list, whether ``Statement`` is a list, one object or absent."""
    loaded = _load(policy)
    if loaded is None:
        return []
    statement = loaded.get("Statement")
    if statement is None:
        return []
    if isinstance(statement, dict):
        return [statement]
    if isinstance(statement, list):
        return statement
    raise ValueError(f"Statement must be a list or an object, got {type(statement).__name__}")


def find_statement(policy: dict | str | None, sid: str) -> dict | None:
    """The first statement of ``policy`` whose Sid is exactly ``sid``, or None."""
    for statement in statements_of(policy):
        if isinstance(statement, dict) and statement.get("Sid") == sid:
            return statement
    return None


def find_owned_statement(policy: dict | str | None, sids: Iterable[str]) -> dict | None:
    """The statement of ``policy`` with the first of ``sids`` found, or None."""
    for sid in sids:
        statement = find_statement(policy, sid)
        if statement is not None:
            return statement
    return None


def merge_statement(policy: dict | str | None, statement: dict, *, replaces: Iterable[str] = ()) -> dict:
    """Return ``policy`` with ``statement`` in it, keyed by the statement's Sid.

    An existing statement with that Sid, or with one of the Sids in
    ``replaces`` (older Sids of the same owner), is replaced where the first
    of them stands (later ones are dropped, so merging twice equals merging
    once); otherwise the statement is appended. A missing or empty policy
    becomes a new one with Version 2012-10-17. The input is never modified.
    """
    sid = statement.get("Sid") if isinstance(statement, dict) else None
    if not isinstance(sid, str) or not sid:
        raise ValueError("the statement to merge must have a non-empty Sid: the Sid is what the portal owns")
    owned = {sid, *replaces}
    loaded = _load(policy)
    if not loaded:
        return {"Version": POLICY_VERSION, "Statement": [copy.deepcopy(statement)]}
    merged: list = []
    placed = False
    for existing in statements_of(loaded):
        if isinstance(existing, dict) and isinstance(existing.get("Sid"), str) and existing["Sid"] in owned:
            if not placed:
                merged.append(copy.deepcopy(statement))
                placed = True
            continue
        merged.append(existing)
    if not placed:
        merged.append(copy.deepcopy(statement))
    loaded["Statement"] = merged
    return loaded


def remove_statement(policy: dict | str | None, sid: str | Iterable[str]) -> dict | None:
    """Return ``policy`` without any statement whose Sid is ``sid`` (or one of several Sids).

    Returns None when there is no policy or no statement is left (for a
    secret: delete the resource policy instead of putting an empty one).
    The input is never modified.
    """
    loaded = _load(policy)
    if loaded is None:
        return None
    sids = {sid} if isinstance(sid, str) else set(sid)
    kept = [
        s for s in statements_of(loaded) if not (isinstance(s, dict) and isinstance(s.get("Sid"), str) and s["Sid"] in sids)
    ]
    if not kept:
        return None
    if isinstance(loaded.get("Statement"), dict) and len(kept) == 1:
        return loaded  # nothing removed: keep the caller's single-object form
    loaded["Statement"] = kept
    return loaded


def policy_text(document: dict | str) -> str:
    """The text sent to AWS for ``document``: a string as given, a dict as compact JSON."""
    if isinstance(document, str):
        return document
    return json.dumps(document, separators=(",", ":"))


def policy_size(kind: str, document: dict | str | list) -> int:
    """The size AWS counts for ``document`` of ``kind``, in the unit of that kind's limit.

    Key policies count UTF-8 bytes, secret policies characters, IAM policies
    non-whitespace characters. For ``role_inline_policies`` a list of
    documents is summed (the quota covers all inline policies of a role).
    """
    if kind not in POLICY_KINDS:
        raise ValueError(f"unknown policy kind {kind!r}; expected one of {', '.join(POLICY_KINDS)}")
    if kind == "role_inline_policies" and isinstance(document, list):
        return sum(policy_size(kind, item) for item in document)
    text = policy_text(document)
    if kind == "key_policy":
        return len(text.encode("utf-8"))
    if kind == "secret_policy":
        return len(text)
    return sum(1 for ch in text if not ch.isspace())


POLICY_LIMITS = {
    "key_policy": (KEY_POLICY_MAX_BYTES, "bytes"),
    "secret_policy": (SECRET_POLICY_MAX_CHARS, "characters"),
    "role_inline_policies": (ROLE_INLINE_POLICIES_MAX_CHARS, "non-whitespace characters"),
    "trust_policy": (TRUST_POLICY_MAX_CHARS, "non-whitespace characters"),
}


def check_policy_size(kind: str, document: dict | str | list) -> int:
    """Return the size of ``document`` if it fits AWS's limit for ``kind``.

    Raises PermanentAwsError(diagnosis="policy_too_large") naming the size and
    the limit otherwise; retrying cannot shrink a policy.
    """
    size = policy_size(kind, document)
    limit, unit = POLICY_LIMITS[kind]
    if size > limit:
        raise PermanentAwsError(
            f"the {kind.replace('_', ' ')} would be {size} {unit}, over the AWS limit of {limit} {unit}",
            diagnosis="policy_too_large",
        )
    return size
