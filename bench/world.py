"""The benchmarks' side of AWS: the grants they make and what those grants touch.

The runbook's two accounts come from the demo's seeding
(``provisioning.demo_world`` and ``requests_app.demo``). On top, each
benchmark gets *targets* of its own: a customer-managed key and a secret
under it. Grants are spread over targets in groups, so consecutive grants
share a secret and a key (and the portal's workers meet on their locks)
while no policy grows beyond what AWS allows.
"""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import boto3

from provisioning.demo_world import REMOTE_ACCOUNT_ID, DemoWorld, admin_client, root_key_policy
from provisioning.spec import AccountAccess, GrantSpec

# Grants per secret and key: enough for neighbours to contend on one policy,
# few enough that a policy stays far below the AWS size limits.
GRANTS_PER_TARGET = 10
ENGINE = "mysql"


@dataclass(frozen=True)
class Target:
    """One secret and the customer-managed key that encrypts it."""

    secret_arn: str
    key_arn: str


@dataclass(frozen=True)
class Grant:
    """One grant of a benchmark: its names and its target."""

    name: str  # endpoint identifier and role name
    target: Target


class RemoteAdmin:
    """Administrator clients of the Remote account (arranging and inspecting AWS)."""

    def __init__(self, world: DemoWorld, *, tag: str = ""):
        # Prefixes every name, so a benchmark run again (at another latency)
        # names grants the portal has not seen.
        self.tag = tag
        session = boto3.session.Session(region_name=world.region)
        self.kms = admin_client("kms", REMOTE_ACCOUNT_ID, endpoint_url=world.endpoint_url, session=session)
        self.secretsmanager = admin_client(
            "secretsmanager", REMOTE_ACCOUNT_ID, endpoint_url=world.endpoint_url, session=session
        )

    def seed_targets(self, prefix: str, count: int) -> list[Target]:
        """``count`` fresh secrets, each under a key of its own."""
        targets = []
        for index in range(count):
            key_arn = self.kms.create_key(
                Description=f"{prefix} {index}", Policy=json.dumps(root_key_policy(REMOTE_ACCOUNT_ID))
            )["KeyMetadata"]["Arn"]
            secret_arn = self.secretsmanager.create_secret(
                Name=f"bench/{prefix}/{index}",
                KmsKeyId=key_arn,
                SecretString=json.dumps({"username": "u", "password": "p", "host": "h", "port": 3306}),
            )["ARN"]
            targets.append(Target(secret_arn=secret_arn, key_arn=key_arn))
        return targets

    def grants(self, prefix: str, count: int) -> list[Grant]:
        """``count`` grants named ``<tag><prefix>-<n>``, ``GRANTS_PER_TARGET`` consecutive ones per target."""
        prefix = f"{self.tag}{prefix}"
        targets = self.seed_targets(prefix, -(-count // GRANTS_PER_TARGET))
        return [Grant(name=f"{prefix}-{n:05d}", target=targets[n // GRANTS_PER_TARGET]) for n in range(count)]

    def statement_sids(self, target: Target) -> tuple[set[str], set[str]]:
        """The Sids in the target's (secret policy, key policy)."""
        text = self.secretsmanager.get_resource_policy(SecretId=target.secret_arn).get("ResourcePolicy")
        secret = json.loads(text) if text else {}
        key = json.loads(self.kms.get_key_policy(KeyId=target.key_arn, PolicyName="default")["Policy"])

        def sids(policy: dict) -> set[str]:
            return {statement.get("Sid", "") for statement in policy.get("Statement", [])}

        return sids(secret), sids(key)


def lost_statements(admin: RemoteAdmin, expected: Sequence[tuple[Target, str]]) -> int:
    """How many of the (target, Sid) grants are missing from their secret or key policy."""
    by_target: dict[Target, list[str]] = {}
    for target, sid in expected:
        by_target.setdefault(target, []).append(sid)
    lost = 0
    for target, sids in by_target.items():
        secret_sids, key_sids = admin.statement_sids(target)
        lost += sum((sid not in secret_sids) + (sid not in key_sids) for sid in sids)
    return lost


def assume_role_calls(endpoint_url: str, session_names: Collection[str]) -> int:
    """How many AssumeRole calls moto answered for these role session names
    (the portal names a request's sessions ``portal-req-<id>``), whichever
    process made them."""
    with urllib.request.urlopen(f"{endpoint_url}/moto-api/data.json", timeout=120) as response:
        assumed = json.load(response).get("sts", {}).get("AssumedRole", [])
    wanted = set(session_names)
    return sum(1 for role in assumed if role.get("session_name") in wanted)


# The baseline runs the engine alone, as a portal deployment of its own.
BASELINE_INSTANCE_ID = "benchbaseline"


def baseline_spec(grant: Grant, *, datalake: AccountAccess, remote: AccountAccess, region: str) -> GrantSpec:
    """The engine's spec of a baseline grant: the one the portal builds for a request of the same grant."""
    return GrantSpec(
        grant_id=grant.name,
        instance_id=BASELINE_INSTANCE_ID,
        datalake=datalake,
        remote=remote,
        region=region,
        secret_arn=grant.target.secret_arn,
        engine=ENGINE,
        endpoint_identifier=grant.name,
        role_name=grant.name,
        kms_key_arn=grant.target.key_arn,
    )
