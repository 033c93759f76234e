"""Drift: how an active grant's resources in AWS differ from its plan.

``check_drift`` only reads (GetRole with its tags, GetRolePolicy,
GetResourcePolicy, DescribeKey when the key is named by alias, GetKeyPolicy,
DescribeEndpoints, ListTagsForResource). It compares exactly what the grant steps would compare
before writing, so a drift finding is always something re-running the
idempotent grant steps puts back, and after such a repair the check reports
nothing.

A role deleted and re-created under the same name is a new principal: AWS
stores the unique id of the role a policy names, so the secret and key
statements of the old role then show its ``AROA...`` id instead of its ARN
and no longer match the new role. That is reported as ``role_recreated``,
as is a live RoleId that differs from the one recorded when the grant ran.

A role or endpoint of the grant's name that is not the grant's (its owner
tags name another request, or the same request id of another portal
instance, see provisioning.ownership) is the grant's role or endpoint gone:
``role_missing`` / ``endpoint_missing``, naming the owner, and not compared
further. Re-running the grant steps then stops with ``role_name_taken`` /
``endpoint_identifier_taken`` rather than touch it.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import (
    endpoint_settings,
    key_policy_statement,
    role_inline_policy,
    role_trust_policy,
    secret_policy_statement,
)
from provisioning.ownership import describe_owner, is_owned, owned_sids
from provisioning.resources import (
    endpoint_tags,
    find_endpoint,
    read_key_policy,
    read_role,
    read_role_policy,
    read_secret_policy,
    resolve_key_arn,
)
from provisioning.spec import GrantSpec
from provisioning.statements import find_owned_statement

ROLE_MISSING = "role_missing"
ROLE_TRUST_POLICY_CHANGED = "role_trust_policy_changed"
ROLE_INLINE_POLICY_CHANGED = "role_inline_policy_changed"
ROLE_RECREATED = "role_recreated"
SECRET_STATEMENT_MISSING = "secret_statement_missing"
SECRET_STATEMENT_CHANGED = "secret_statement_changed"
KEY_STATEMENT_MISSING = "key_statement_missing"
KEY_STATEMENT_CHANGED = "key_statement_changed"
ENDPOINT_MISSING = "endpoint_missing"
ENDPOINT_SETTINGS_CHANGED = "endpoint_settings_changed"

DRIFT_KINDS = (
    ROLE_MISSING,
    ROLE_TRUST_POLICY_CHANGED,
    ROLE_INLINE_POLICY_CHANGED,
    ROLE_RECREATED,
    SECRET_STATEMENT_MISSING,
    SECRET_STATEMENT_CHANGED,
    KEY_STATEMENT_MISSING,
    KEY_STATEMENT_CHANGED,
    ENDPOINT_MISSING,
    ENDPOINT_SETTINGS_CHANGED,
)

# Which account a finding is in: the DataLake account's role and endpoint
# are the requester's side; the Remote account's secret and key policies are
# its owners' (a statement missing there may have been removed on purpose).
DATALAKE = "datalake"
REMOTE = "remote"
_DATALAKE_KINDS = frozenset({
    ROLE_MISSING, ROLE_TRUST_POLICY_CHANGED, ROLE_INLINE_POLICY_CHANGED, ENDPOINT_MISSING, ENDPOINT_SETTINGS_CHANGED,
})

# IAM role unique ids start with AROA; a policy shows one in place of the ARN
# of a role that no longer exists.
_ROLE_UNIQUE_ID = re.compile(r"AROA[A-Z0-9]{12,}")
# DMS answers with these in another case than CreateEndpoint takes them.
_CASE_INSENSITIVE_SETTINGS = frozenset({"EndpointType", "EngineName"})


@dataclass(frozen=True)
class DriftFinding:
    """One difference between the plan and AWS."""

    kind: str  # one of DRIFT_KINDS
    resource: str  # the ARN (or name) of what drifted
    message: str
    expected: Any = None
    actual: Any = None

    def to_dict(self) -> dict:
        """The finding as plain JSON-serialisable data, with the account it is in."""
        return {**asdict(self), "account": finding_account(self.kind, self.resource)}


def finding_account(kind: str, resource: str) -> str:
    """``DATALAKE`` or ``REMOTE``: the account in which the finding ``kind`` on ``resource`` is.

    ``role_recreated`` is found on the role itself (DataLake) or on a secret
    or key statement that names the old role (Remote). Anything not known to
    be in the DataLake account counts as Remote: its owners decide.
    """
    if kind in _DATALAKE_KINDS:
        return DATALAKE
    if kind == ROLE_RECREATED and ":iam::" in (resource or "") and ":role/" in (resource or ""):
        return DATALAKE
    return REMOTE


@dataclass
class DriftReport:
    """What one drift check of a grant found."""

    findings: list[DriftFinding] = field(default_factory=list)
    role_id: str | None = None  # the live role's RoleId, when the role exists
    aws_request_ids: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        """True when AWS differs from the plan in any way."""
        return bool(self.findings)

    @property
    def kinds(self) -> list[str]:
        """The kinds found, each once, in ``DRIFT_KINDS`` order."""
        found = {finding.kind for finding in self.findings}
        return [kind for kind in DRIFT_KINDS if kind in found]

    def to_dict(self) -> dict:
        """The report as plain JSON-serialisable data, as the portal stores it."""
        return {
            "drifted": self.drifted,
            "kinds": self.kinds,
            "findings": [finding.to_dict() for finding in self.findings],
            "role_id": self.role_id,
            "aws_request_ids": list(self.aws_request_ids),
        }


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _unique_id_principals(statement: dict) -> list[str]:
    principal = statement.get("Principal")
    values = principal.get("AWS") if isinstance(principal, dict) else None
    return [v for v in _as_list(values) if isinstance(v, str) and _ROLE_UNIQUE_ID.fullmatch(v)]


def _check_role(calls: AwsCalls, spec: GrantSpec, clients: GrantClients, expected_role_id: str | None,
                report: DriftReport) -> None:
    iam = clients.datalake("iam")
    role = read_role(calls, iam, spec.role_name)
    if role is None:
        report.findings.append(DriftFinding(
            ROLE_MISSING, spec.role_arn, f"The role {spec.role_name} no longer exists in account "
            f"{spec.datalake.account_id}."))
        return
    if not is_owned(role.tags, spec):
        report.findings.append(DriftFinding(
            ROLE_MISSING, spec.role_arn, f"The role {spec.role_name} in account {spec.datalake.account_id} now "
            f"belongs to {describe_owner(role.tags)}, not to this request of this portal."))
        return
    report.role_id = role.role_id
    if expected_role_id and role.role_id != expected_role_id:
        report.findings.append(DriftFinding(
            ROLE_RECREATED, spec.role_arn,
            f"The role {spec.role_name} was deleted and created again (its id was {expected_role_id}, it is now "
            f"{role.role_id}); the secret and key policies must name the new role.",
            expected=expected_role_id, actual=role.role_id))
    trust = role_trust_policy(spec)
    if role.trust_policy != trust:
        report.findings.append(DriftFinding(
            ROLE_TRUST_POLICY_CHANGED, spec.role_arn, f"The trust policy of the role {spec.role_name} was edited.",
            expected=trust, actual=role.trust_policy))
    inline = role_inline_policy(spec)
    current_inline = read_role_policy(calls, iam, spec.role_name)
    if current_inline != inline:
        what = "was removed" if current_inline is None else "was edited"
        report.findings.append(DriftFinding(
            ROLE_INLINE_POLICY_CHANGED, spec.role_arn, f"The inline policy of the role {spec.role_name} {what}.",
            expected=inline, actual=current_inline))


def _check_statement(report: DriftReport, *, policy: dict | None, statement: dict, sids: tuple[str, ...],
                     resource: str, what: str, missing_kind: str, changed_kind: str, role_arn: str) -> None:
    current = find_owned_statement(policy, sids)
    if current is not None and current.get("Sid") != statement["Sid"]:
        # The grant's statement from before instance ids: in place if it
        # grants the same; a repair gives it the new Sid.
        current = {**current, "Sid": statement["Sid"]}
    if current is None:
        report.findings.append(DriftFinding(
            missing_kind, resource, f"The grant's statement {statement['Sid']} is no longer in the {what}.",
            expected=statement, actual=None))
        return
    if current == statement:
        return
    stale = _unique_id_principals(current)
    if stale:
        report.findings.append(DriftFinding(
            ROLE_RECREATED, resource,
            f"The grant's statement in the {what} names {', '.join(stale)} instead of {role_arn}: the role was "
            "deleted (and perhaps created again), so the statement no longer applies to it.",
            expected=statement, actual=current))
        return
    report.findings.append(DriftFinding(
        changed_kind, resource, f"The grant's statement {statement['Sid']} in the {what} was edited.",
        expected=statement, actual=current))


def _check_remote(calls: AwsCalls, spec: GrantSpec, clients: GrantClients, report: DriftReport) -> None:
    secretsmanager = clients.remote("secretsmanager")
    exists, secret_policy = read_secret_policy(calls, secretsmanager, spec.secret_arn, missing_ok=True)
    if not exists:
        report.findings.append(DriftFinding(
            SECRET_STATEMENT_MISSING, spec.secret_arn, "The secret no longer exists.",
            expected=secret_policy_statement(spec)))
    else:
        _check_statement(report, policy=secret_policy, statement=secret_policy_statement(spec),
                         sids=owned_sids(spec), resource=spec.secret_arn, what="secret's resource policy",
                         missing_kind=SECRET_STATEMENT_MISSING, changed_kind=SECRET_STATEMENT_CHANGED,
                         role_arn=spec.role_arn)

    kms = clients.remote("kms")
    key_arn = resolve_key_arn(calls, kms, spec.kms_key_arn, missing_ok=True) if spec.kms_key_arn else None
    exists, key_policy = (False, None) if key_arn is None else read_key_policy(calls, kms, key_arn, missing_ok=True)
    if not exists:
        report.findings.append(DriftFinding(
            KEY_STATEMENT_MISSING, key_arn or spec.kms_key_arn or "", "The KMS key no longer exists.",
            expected=key_policy_statement(spec)))
    else:
        _check_statement(report, policy=key_policy, statement=key_policy_statement(spec), sids=owned_sids(spec),
                         resource=key_arn,
                         what="key policy", missing_kind=KEY_STATEMENT_MISSING, changed_kind=KEY_STATEMENT_CHANGED,
                         role_arn=spec.role_arn)


def _setting_differences(current: dict, desired: dict) -> dict:
    """``{setting: (expected, actual)}`` for the settings the plan sets that differ.

    A settings object is compared on the keys the plan sets: DMS fills in
    defaults for the others.
    """
    differences = {}
    for key, want in desired.items():
        have = current.get(key)
        if isinstance(want, dict):
            have_settings = have if isinstance(have, dict) else {}
            if any(have_settings.get(name) != value for name, value in want.items()):
                differences[key] = (want, {name: have_settings.get(name) for name in want})
        elif key in _CASE_INSENSITIVE_SETTINGS:
            if str(have or "").lower() != str(want).lower():
                differences[key] = (want, have)
        elif have != want:
            differences[key] = (want, have)
    return differences


def _check_endpoint(calls: AwsCalls, spec: GrantSpec, clients: GrantClients, report: DriftReport) -> None:
    dms = clients.datalake("dms")
    endpoint = find_endpoint(calls, dms, spec.endpoint_identifier)
    resource = spec.endpoint_identifier
    if endpoint is None:
        report.findings.append(DriftFinding(
            ENDPOINT_MISSING, resource, f"The DMS endpoint {spec.endpoint_identifier} no longer exists."))
        return
    tags = endpoint_tags(calls, dms, endpoint["EndpointArn"])
    if not is_owned(tags, spec):
        report.findings.append(DriftFinding(
            ENDPOINT_MISSING, spec.endpoint_identifier, f"The DMS endpoint {spec.endpoint_identifier} now belongs "
            f"to {describe_owner(tags)}, not to this request of this portal."))
        return
    differences = _setting_differences(endpoint, endpoint_settings(spec))
    if differences:
        report.findings.append(DriftFinding(
            ENDPOINT_SETTINGS_CHANGED, endpoint.get("EndpointArn") or resource,
            f"The DMS endpoint {spec.endpoint_identifier} has other settings: {', '.join(sorted(differences))}.",
            expected={key: pair[0] for key, pair in differences.items()},
            actual={key: pair[1] for key, pair in differences.items()}))


def check_drift(spec: GrantSpec, *, clients: GrantClients, expected_role_id: str | None = None) -> DriftReport:
    """Compare an active grant's role, secret and key statements and endpoint with its plan.

    Read-only. ``expected_role_id`` is the RoleId recorded when the grant
    created its role; a live role with another id is ``role_recreated``.
    Raises RetryableAwsError / PermanentAwsError when AWS cannot be read
    (a check that could not look is not a clean check).
    """
    calls = AwsCalls()
    report = DriftReport()
    _check_role(calls, spec, clients, expected_role_id, report)
    _check_remote(calls, spec, clients, report)
    _check_endpoint(calls, spec, clients, report)
    report.aws_request_ids = list(calls.request_ids)
    return report
