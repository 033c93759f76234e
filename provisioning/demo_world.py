"""The runbook's AWS world, built in a moto server for the demo and the tests.

Two accounts in eu-west-1, as in the runbook's examples:
- Remote (222222222222): a customer-managed key (alias ``alias/source-db``)
  whose policy is the runbook's root statement, the secret
  ``prod/source-db/credentials`` under that key holding the JSON DMS expects
  ({username, password, host, port}), and ``prod/legacy-db/credentials``
  under the AWS-managed key, which can never be shared across accounts (the
  portal must refuse it with ``aws_managed_key``);
- DataLake (111111111111): a DMS replication instance, so requests can run a
  connection test.
Each account has the provisioner role the portal assumes, trusting the
portal's own account (moto's default account, which the base credentials
map to).

moto decides the account from the caller's credentials, and AssumeRole of a
role in another account returns credentials for that account, so "acting in
an account" here means assuming a role there.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass

import boto3
from botocore.exceptions import ClientError

REGION = "eu-west-1"
DATALAKE_ACCOUNT_ID = "111111111111"
REMOTE_ACCOUNT_ID = "222222222222"
# moto's default account: where the portal's base credentials live.
PORTAL_ACCOUNT_ID = "123456789012"
PROVISIONER_ROLE_NAME = "dms-access-portal-provisioner"
# Any role name works in moto; this one says what the seeding acts as.
ADMIN_ROLE_NAME = "demo-account-admin"
SOURCE_SECRET_NAME = "prod/source-db/credentials"
LEGACY_SECRET_NAME = "prod/legacy-db/credentials"
KEY_ALIAS = "alias/source-db"
REPLICATION_INSTANCE_ID = "datalake-replication"
SOURCE_DB_HOST = "source-db.remote.internal"


@dataclass(frozen=True)
class DemoWorld:
    """The ARNs and ids of the seeded world (no secret values)."""

    endpoint_url: str
    region: str
    portal_account_id: str
    datalake_account_id: str
    remote_account_id: str
    datalake_provisioner_role_arn: str
    remote_provisioner_role_arn: str
    secret_arn: str
    key_arn: str
    key_alias_arn: str
    managed_secret_arn: str
    replication_instance_arn: str

    def as_dict(self) -> dict[str, str]:
        """The world as a JSON-ready dict."""
        return asdict(self)


def provisioner_role_arn(account_id: str) -> str:
    """The ARN of the demo's provisioner role in ``account_id``."""
    return f"arn:aws:iam::{account_id}:role/{PROVISIONER_ROLE_NAME}"


def root_key_policy(account_id: str) -> dict:
    """The runbook's key policy before any grant: the account root administers the key."""
    return {
        "Version": "2012-10-17",
        "Id": "key-policy-source-db-credentials",
        "Statement": [
            {
                "Sid": "EnableRootPermissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }


class AccountAdmins:
    """Clients acting as an administrator of each account in the moto at
    ``endpoint_url``: one AssumeRole per account, one client per service."""

    def __init__(self, *, endpoint_url: str, region: str = REGION, session=None):
        self._endpoint_url = endpoint_url
        self._region = region
        self._session = session or boto3.session.Session(region_name=region)
        self._sts = None
        self._credentials: dict[str, dict] = {}
        self._clients: dict[tuple[str, str], object] = {}

    def client(self, service: str, account_id: str):
        """A ``service`` client acting as an administrator of ``account_id``."""
        key = (service, account_id)
        if key not in self._clients:
            credentials = self._assume(account_id)
            self._clients[key] = self._session.client(
                service,
                region_name=self._region,
                endpoint_url=self._endpoint_url,
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
        return self._clients[key]

    def _assume(self, account_id: str) -> dict:
        if account_id not in self._credentials:
            if self._sts is None:
                self._sts = self._session.client("sts", region_name=self._region, endpoint_url=self._endpoint_url)
            self._credentials[account_id] = self._sts.assume_role(
                RoleArn=f"arn:aws:iam::{account_id}:role/{ADMIN_ROLE_NAME}", RoleSessionName="demo-seed"
            )["Credentials"]
        return self._credentials[account_id]


def admin_client(service: str, account_id: str, *, endpoint_url: str, region: str = REGION, session=None):
    """A client acting as an administrator of ``account_id`` in the moto at ``endpoint_url``."""
    return AccountAdmins(endpoint_url=endpoint_url, region=region, session=session).client(service, account_id)


def seed_aws_world(endpoint_url: str, *, region: str = REGION, session=None) -> DemoWorld:
    """Create the runbook's two accounts in the moto server at ``endpoint_url``
    and return their ARNs. Safe to call again on the same server: what exists
    is found and kept. Refuses to run without an endpoint, so it can never
    touch real AWS. A boto3 ``session`` that has built clients before saves
    parsing the service models again."""
    if not endpoint_url:
        raise ValueError("seed_aws_world needs a moto endpoint URL; it never seeds real AWS")
    client = AccountAdmins(endpoint_url=endpoint_url, region=region, session=session).client

    for account_id in (DATALAKE_ACCOUNT_ID, REMOTE_ACCOUNT_ID):
        _ensure_provisioner_role(client("iam", account_id))
    kms = client("kms", REMOTE_ACCOUNT_ID)
    key_arn = _ensure_key(kms)
    secretsmanager = client("secretsmanager", REMOTE_ACCOUNT_ID)
    secret_arn = _ensure_secret(secretsmanager, SOURCE_SECRET_NAME, kms_key_id=key_arn)
    managed_secret_arn = _ensure_secret(secretsmanager, LEGACY_SECRET_NAME, kms_key_id=None)
    replication_instance_arn = _ensure_replication_instance(client("dms", DATALAKE_ACCOUNT_ID))
    return DemoWorld(
        endpoint_url=endpoint_url,
        region=region,
        portal_account_id=PORTAL_ACCOUNT_ID,
        datalake_account_id=DATALAKE_ACCOUNT_ID,
        remote_account_id=REMOTE_ACCOUNT_ID,
        datalake_provisioner_role_arn=provisioner_role_arn(DATALAKE_ACCOUNT_ID),
        remote_provisioner_role_arn=provisioner_role_arn(REMOTE_ACCOUNT_ID),
        secret_arn=secret_arn,
        key_arn=key_arn,
        key_alias_arn=f"arn:aws:kms:{region}:{REMOTE_ACCOUNT_ID}:{KEY_ALIAS}",
        managed_secret_arn=managed_secret_arn,
        replication_instance_arn=replication_instance_arn,
    )


def _ensure_provisioner_role(iam) -> None:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{PORTAL_ACCOUNT_ID}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    try:
        iam.create_role(
            RoleName=PROVISIONER_ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="Assumed by the DMS Access Portal's workers",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "EntityAlreadyExists":
            raise


def _ensure_key(kms) -> str:
    try:
        return kms.describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["Arn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NotFoundException":
            raise
    key = kms.create_key(
        Description="Encrypts the source database credentials",
        Policy=json.dumps(root_key_policy(REMOTE_ACCOUNT_ID)),
    )["KeyMetadata"]
    kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=key["KeyId"])
    return key["Arn"]


def _ensure_secret(secretsmanager, name: str, *, kms_key_id: str | None) -> str:
    try:
        return secretsmanager.describe_secret(SecretId=name)["ARN"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    # DMS reads exactly these keys; the password avoids the characters DMS
    # cannot use with rotation (; . : +).
    value = {"username": "dms_reader", "password": secrets.token_urlsafe(18), "host": SOURCE_DB_HOST, "port": 3306}
    arguments = {"Name": name, "SecretString": json.dumps(value), "Description": "Database credentials for DMS"}
    if kms_key_id:
        arguments["KmsKeyId"] = kms_key_id
    return secretsmanager.create_secret(**arguments)["ARN"]


def _ensure_replication_instance(dms) -> str:
    found = dms.describe_replication_instances(
        Filters=[{"Name": "replication-instance-id", "Values": [REPLICATION_INSTANCE_ID]}]
    )["ReplicationInstances"]
    if found:
        return found[0]["ReplicationInstanceArn"]
    return dms.create_replication_instance(
        ReplicationInstanceIdentifier=REPLICATION_INSTANCE_ID, ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]["ReplicationInstanceArn"]
