"""The baseline: the fewest boto3 calls that make one grant, with no portal.

What someone following the runbook by script would do for the same grant as
the portal, against the same moto server:

- one AssumeRole per account per grant (DataLake and Remote), clients built
  from one shared base session with the assumed credentials passed in;
- CreateRole, PutRolePolicy (DataLake);
- GetResourcePolicy, PutResourcePolicy; GetKeyPolicy, PutKeyPolicy (Remote),
  merging the grant's statement into what is there;
- CreateEndpoint (DataLake).

The documents are the engine's own (``provisioning.documents``), so both
sides send AWS the same bytes. No reads before writes, no lock, no database,
no broker: everything the portal does beyond this is its overhead.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.config import Config

from provisioning.documents import (
    ROLE_INLINE_POLICY_NAME,
    endpoint_settings,
    key_policy_statement,
    role_inline_policy,
    role_trust_policy,
    secret_policy_statement,
)
from provisioning.ownership import owner_tags
from provisioning.spec import AccountAccess, GrantSpec
from provisioning.statements import merge_statement

# The operations of one baseline grant, in order (AssumeRole once per account).
BASELINE_OPERATIONS = (
    "sts:AssumeRole",
    "sts:AssumeRole",
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "secretsmanager:GetResourcePolicy",
    "secretsmanager:PutResourcePolicy",
    "kms:GetKeyPolicy",
    "kms:PutKeyPolicy",
    "dms:CreateEndpoint",
)


class BaselineGrants:
    """Makes grants with the minimal calls; one instance per process (boto3
    sessions are not thread-safe)."""

    def __init__(self, *, endpoint_url: str, region: str, session: boto3.session.Session | None = None):
        self.session = session or boto3.session.Session(region_name=region)
        self.endpoint_url = endpoint_url
        self.region = region
        # The same client settings as the portal's factory.
        self.config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard"})
        self.sts = self.session.client("sts", region_name=region, endpoint_url=endpoint_url, config=self.config)

    def _assumed(self, account: AccountAccess, session_name: str) -> dict[str, str]:
        params: dict[str, Any] = {"RoleArn": account.provisioner_role_arn, "RoleSessionName": session_name}
        if account.external_id:
            params["ExternalId"] = account.external_id
        credentials = self.sts.assume_role(**params)["Credentials"]
        return {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        }

    def _client(self, service: str, credentials: dict[str, str]) -> Any:
        return self.session.client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, config=self.config, **credentials
        )

    def grant(self, spec: GrantSpec) -> None:
        """Make ``spec``'s grant in AWS."""
        datalake = self._assumed(spec.datalake, spec.session_name)
        remote = self._assumed(spec.remote, spec.session_name)

        iam = self._client("iam", datalake)
        iam.create_role(
            RoleName=spec.role_name,
            AssumeRolePolicyDocument=json.dumps(role_trust_policy(spec)),
            Tags=owner_tags(spec),
        )
        iam.put_role_policy(
            RoleName=spec.role_name,
            PolicyName=ROLE_INLINE_POLICY_NAME,
            PolicyDocument=json.dumps(role_inline_policy(spec)),
        )

        secretsmanager = self._client("secretsmanager", remote)
        text = secretsmanager.get_resource_policy(SecretId=spec.secret_arn).get("ResourcePolicy")
        merged = merge_statement(json.loads(text) if text else None, secret_policy_statement(spec))
        secretsmanager.put_resource_policy(
            SecretId=spec.secret_arn, ResourcePolicy=json.dumps(merged), BlockPublicPolicy=True
        )

        kms = self._client("kms", remote)
        policy = json.loads(kms.get_key_policy(KeyId=spec.kms_key_arn, PolicyName="default")["Policy"])
        kms.put_key_policy(
            KeyId=spec.kms_key_arn,
            PolicyName="default",
            Policy=json.dumps(merge_statement(policy, key_policy_statement(spec))),
        )

        dms = self._client("dms", datalake)
        dms.create_endpoint(Tags=owner_tags(spec), **endpoint_settings(spec))


def timed_grants(grants: BaselineGrants, specs: Sequence[GrantSpec], clock: Callable[[], float] = time.time) -> list[float]:
    """Make each grant in turn; the seconds each one took."""
    durations = []
    for spec in specs:
        started = clock()
        grants.grant(spec)
        durations.append(clock() - started)
    return durations


def run_share(endpoint_url: str, region: str, warmup: Sequence[GrantSpec], specs: Sequence[GrantSpec],
              wait_for_start: Callable[[], object]) -> tuple[float, float]:
    """One baseline process of a parallel run: warm up, wait for the others
    (``wait_for_start``), make ``specs``; returns (start, end) in epoch seconds.

    Meant for a child process of its own: each has its own base session, as
    each portal worker process has.
    """
    grants = BaselineGrants(endpoint_url=endpoint_url, region=region)
    timed_grants(grants, warmup)
    wait_for_start()
    started = time.time()
    timed_grants(grants, specs)
    return started, time.time()


def share_process(endpoint_url: str, region: str, warmup, specs, barrier, results) -> None:
    """Target of a baseline child process: ``run_share``, answering on ``results``
    with (start, end), or with the error's text."""
    try:
        results.put(run_share(endpoint_url, region, warmup, specs, barrier.wait))
    except BaseException as error:
        # The others wait at the barrier: let them go, the run is void.
        barrier.abort()
        results.put(f"{type(error).__name__}: {error}")
        raise
