"""Can the grant's role read the secret? An offline evaluation of the three live documents.

AWS offers no API that evaluates a resource policy for a role
(SimulatePrincipalPolicy covers resource policies for IAM users only), and
moto evaluates none, so verify evaluates the documents itself. It answers two
questions, as AWS does for a cross-account call:

* may the role call ``secretsmanager:GetSecretValue`` on the secret? The
  role's identity policies AND the secret's resource policy must allow it;
* may it call ``kms:Decrypt`` on the key through Secrets Manager in the
  region? The role's identity policies AND the key policy must allow it.

An explicit Deny anywhere wins. Same-account calls follow AWS too: a resource
policy alone suffices for the secret, and a key policy naming the role
directly suffices for the key.

Supported policy grammar: Effect Allow/Deny; Action/NotAction with ``*`` and
``?`` (case-insensitive); Resource/NotResource with wildcards (case-sensitive);
Principal/NotPrincipal ``"*"`` or ``{"AWS": ...}`` naming the exact role ARN, an
account root ARN, a bare account id or ``"*"`` (``Service`` and other principal
types never match a role); the condition operators StringEquals,
StringNotEquals, StringLike, StringNotLike, ArnEquals, ArnLike, ArnNotEquals and
ArnNotLike, each also with ``IfExists``, on the keys kms:ViaService,
aws:PrincipalArn, aws:PrincipalAccount and kms:CallerAccount.

Anything outside that grammar **fails closed**: an unknown condition operator
or key makes an Allow statement not apply and a Deny statement apply (the
unknown condition is taken as false for an Allow and true for a Deny). So an
exotic policy may be reported as denying access it would really allow, never
the other way round; the reasons name the condition that was not understood.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from provisioning.arns import Arn, dns_suffix, is_key_id_arn, parse_kms_key_arn, parse_role_arn, parse_secret_arn
from provisioning.errors import InvalidInput
from provisioning.names import validate_region
from provisioning.statements import statements_of

SECRET_ACTION = "secretsmanager:GetSecretValue"
KEY_ACTION = "kms:Decrypt"

KNOWN_CONDITION_KEYS = frozenset({"kms:viaservice", "aws:principalarn", "aws:principalaccount", "kms:calleraccount"})
_STRING_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike"}
_ARN_OPERATORS = {"ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"}
_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


@dataclass(frozen=True)
class AccessDecision:
    """The outcome: ``allowed``; if not, the first failing ``diagnosis``; ``reasons`` for people."""

    allowed: bool
    diagnosis: str | None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The decision as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class _Request:
    action: str
    resource: str
    principal: Arn
    context: dict[str, str]


@dataclass
class _PolicyResult:
    allows: list[str] = field(default_factory=list)  # labels of matching Allow statements
    denies: list[str] = field(default_factory=list)
    via_account: bool = False  # an Allow matched through the account, not the role itself
    via_role: bool = False
    notes: list[str] = field(default_factory=list)


@lru_cache(maxsize=512)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _matches_any(patterns: object, value: str, *, ignore_case: bool) -> bool:
    return any(
        isinstance(p, str) and _glob(p, ignore_case).fullmatch(value) is not None for p in _as_list(patterns)
    )


def _arn_like(pattern: str, value: str) -> bool:
    # ArnLike compares the six colon-separated parts one by one.
    pattern_parts, value_parts = pattern.split(":", 5), value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(_glob(p, False).fullmatch(v) is not None for p, v in zip(pattern_parts, value_parts))


def _principal_match(element: object, principal: Arn) -> str | None:
    """``"role"`` if ``element`` names the role itself (or everyone), ``"account"`` if its account, else None."""
    if element == "*":
        return "role"
    if not isinstance(element, dict):
        return None
    found = None
    for entry in _as_list(element.get("AWS")):
        if entry == "*" or entry == principal.raw:
            return "role"
        if entry in (principal.account, f"arn:{principal.partition}:iam::{principal.account}:root"):
            found = "account"
    return found


def _near_misses(element: object, principal: Arn) -> list[str]:
    """Principals that look meant for the role but do not match it, for the reasons."""
    notes = []
    if not isinstance(element, dict):
        return notes
    for entry in _as_list(element.get("AWS")):
        if not isinstance(entry, str) or entry == principal.raw:
            continue
        if entry.strip() == principal.raw:
            notes.append(f"principal {entry!r} differs from the role ARN only by whitespace")
        elif entry.lower() == principal.raw.lower():
            notes.append(f"principal {entry!r} differs from the role ARN {principal.raw!r} in letter case")
        elif entry.startswith("AROA"):
            notes.append(f"principal {entry!r} is a role's unique id: the role was deleted and re-created")
    return notes


def _condition_holds(condition: object, context: dict[str, str], effect: str, notes: list[str]) -> bool:
    if condition is None:
        return True
    unknown_result = effect == "Deny"  # fail closed
    if not isinstance(condition, dict):
        notes.append("a Condition that is not an object was not understood")
        return unknown_result
    for operator, pairs in condition.items():
        base = operator[: -len("IfExists")] if operator.endswith("IfExists") else operator
        if base not in _STRING_OPERATORS | _ARN_OPERATORS or not isinstance(pairs, dict):
            notes.append(f"condition operator {operator!r} is not supported; treated as {unknown_result}")
            if not unknown_result:
                return False
            continue
        for key, expected in pairs.items():
            lowered = key.lower()
            if lowered not in KNOWN_CONDITION_KEYS:
                notes.append(f"condition key {key!r} is not supported; treated as {unknown_result}")
                if not unknown_result:
                    return False
                continue
            actual = context.get(lowered)
            if actual is None:
                # AWS: a missing key fails a condition, except negated and IfExists ones.
                holds = base in _NEGATED or operator.endswith("IfExists")
            else:
                values = [_text(v) for v in _as_list(expected)]
                if base in ("StringEquals", "StringNotEquals"):
                    hit = actual in values
                elif base in ("StringLike", "StringNotLike"):
                    hit = _matches_any(values, actual, ignore_case=False)
                else:
                    hit = any(_arn_like(v, actual) for v in values)
                holds = not hit if base in _NEGATED else hit
            if not holds:
                return False
    return True


def _describe_context(statement: dict, request: _Request) -> str:
    """The request's values of the keys a statement's Condition tests."""
    condition = statement.get("Condition")
    keys = []
    if isinstance(condition, dict):
        for pairs in condition.values():
            if isinstance(pairs, dict):
                keys.extend(k for k in pairs if k not in keys)
    shown = [f"{k}={request.context.get(k.lower(), '<absent>')}" for k in keys]
    return "request has " + ", ".join(shown) if shown else "no condition keys"


def _label(statement: dict, index: int, source: str) -> str:
    sid = statement.get("Sid")
    return f"{source} statement {sid!r}" if sid else f"{source} statement #{index + 1}"


def _evaluate(policies: list, request: _Request, *, source: str, resource_policy: bool) -> _PolicyResult:
    result = _PolicyResult()
    for policy in policies:
        for index, statement in enumerate(statements_of(policy)):
            if not isinstance(statement, dict):
                continue
            effect = statement.get("Effect")
            if effect not in ("Allow", "Deny"):
                result.notes.append(f"{_label(statement, index, source)} has no valid Effect and was ignored")
                continue
            if "Action" in statement:
                if not _matches_any(statement["Action"], request.action, ignore_case=True):
                    continue
            elif "NotAction" in statement:
                if _matches_any(statement["NotAction"], request.action, ignore_case=True):
                    continue
            else:
                continue
            if "Resource" in statement:
                if not _matches_any(statement["Resource"], request.resource, ignore_case=False):
                    continue
            elif "NotResource" in statement:
                if _matches_any(statement["NotResource"], request.resource, ignore_case=False):
                    continue
            elif not resource_policy:
                continue
            how = "role"
            if resource_policy:
                if "Principal" in statement:
                    how = _principal_match(statement["Principal"], request.principal)
                    if how is None:
                        result.notes.extend(
                            f"{_label(statement, index, source)}: {note}"
                            for note in _near_misses(statement["Principal"], request.principal)
                        )
                        continue
                elif "NotPrincipal" in statement:
                    if _principal_match(statement["NotPrincipal"], request.principal) is not None:
                        continue
                else:
                    continue
            notes: list[str] = []
            holds = _condition_holds(statement.get("Condition"), request.context, effect, notes)
            result.notes.extend(f"{_label(statement, index, source)}: {note}" for note in notes)
            label = _label(statement, index, source)
            if not holds:
                if effect == "Allow":
                    result.notes.append(f"{label}: its Condition does not hold ({_describe_context(statement, request)})")
                continue
            if effect == "Deny":
                result.denies.append(label)
            else:
                result.allows.append(label)
                result.via_role = result.via_role or how == "role"
                result.via_account = result.via_account or how == "account"
    return result


def _check(
    request: _Request,
    identity: _PolicyResult,
    resource: _PolicyResult,
    *,
    resource_name: str,
    resource_diagnosis: str,
    same_account: bool,
    resource_alone_suffices: bool,
    reasons: list[str],
) -> list[str]:
    """Apply AWS's decision rules to one action; return the failing diagnoses in order."""
    failures: list[str] = []
    action = request.action
    reasons.extend(identity.notes + resource.notes)
    if identity.denies:
        reasons.append(f"{action}: explicitly denied by {', '.join(identity.denies)}")
        failures.append("identity_policy_denies")
    if resource.denies:
        reasons.append(f"{action}: explicitly denied by {', '.join(resource.denies)}")
        failures.append(resource_diagnosis)
    if failures:
        return failures
    if same_account and resource_alone_suffices:
        if identity.allows or resource.allows:
            reasons.append(f"{action}: allowed by {', '.join(identity.allows + resource.allows)}")
            return []
        reasons.append(f"{action}: neither the role's policies nor the {resource_name} allow it")
        return ["identity_policy_denies", resource_diagnosis]
    if not identity.allows:
        reasons.append(f"{action}: no statement of the role's policies allows it on {request.resource}")
        failures.append("identity_policy_denies")
    if not resource.allows:
        reasons.append(f"{action}: the {resource_name} has no statement allowing {request.principal.raw}")
        failures.append(resource_diagnosis)
    if not failures:
        reasons.append(f"{action}: allowed by {', '.join(identity.allows + resource.allows)}")
    return failures


def evaluate_access(
    *,
    role_arn: str,
    role_policies: list[dict],
    secret_arn: str,
    secret_policy: dict | None,
    key_arn: str,
    key_policy: dict | None,
    region: str,
) -> AccessDecision:
    """Decide whether ``role_arn`` can read ``secret_arn`` and decrypt it with ``key_arn``.

    ``role_policies`` are the role's identity policy documents (inline and
    attached); ``secret_policy``/``key_policy`` are the live resource
    policies (None when there is none). Diagnoses: ``identity_policy_denies``,
    ``secret_policy_denies``, ``key_policy_denies``; the first failure in the
    order of the call (secret, then key; identity before resource) is the
    decision's diagnosis, and every failure is among the reasons.
    """
    role = parse_role_arn(role_arn, field="role_arn")
    secret = parse_secret_arn(secret_arn)
    key = parse_kms_key_arn(key_arn, field="key_arn")
    if not is_key_id_arn(key):
        raise InvalidInput("key_arn", "must name the key by id (key/<id>): kms:Decrypt is authorised on the key ARN")
    validate_region(region)
    principal_context = {"aws:principalarn": role.raw, "aws:principalaccount": role.account}
    reasons: list[str] = []

    secret_request = _Request(SECRET_ACTION, secret.raw, role, dict(principal_context))
    secret_resource = (
        _evaluate([secret_policy], secret_request, source="secret policy", resource_policy=True)
        if secret_policy
        else _PolicyResult(notes=["the secret has no resource policy"])
    )
    failures = _check(
        secret_request,
        _evaluate(role_policies, secret_request, source="role policy", resource_policy=False),
        secret_resource,
        resource_name="secret's resource policy",
        resource_diagnosis="secret_policy_denies",
        same_account=role.account == secret.account,
        resource_alone_suffices=True,
        reasons=reasons,
    )

    key_request = _Request(
        KEY_ACTION,
        key.raw,
        role,
        {
            **principal_context,
            "kms:calleraccount": role.account,
            "kms:viaservice": f"secretsmanager.{region}.{dns_suffix(key.partition)}",
        },
    )
    key_resource = (
        _evaluate([key_policy], key_request, source="key policy", resource_policy=True)
        if key_policy
        else _PolicyResult(notes=["no key policy was given"])
    )
    key_identity = _evaluate(role_policies, key_request, source="role policy", resource_policy=False)
    # A key policy naming the role itself is enough in the key's own account;
    # naming only the account delegates to IAM policies, which must then allow.
    failures += _check(
        key_request,
        key_identity,
        key_resource,
        resource_name="key policy",
        resource_diagnosis="key_policy_denies",
        same_account=role.account == key.account,
        resource_alone_suffices=key_resource.via_role,
        reasons=reasons,
    )
    return AccessDecision(allowed=not failures, diagnosis=failures[0] if failures else None, reasons=reasons)
