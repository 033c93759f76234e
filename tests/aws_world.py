"""The runbook's world in moto: a DataLake and a Remote account in eu-west-1.

Remote (222222222222): the secret prod/source-db/credentials under a
customer-managed key (alias alias/source-db), and prod/legacy-db/credentials
under the AWS-managed aws/secretsmanager key. DataLake (111111111111): a DMS
replication instance. Both: a provisioner role the portal assumes. The
portal's own base credentials live in moto's default account.

moto picks the account from the credentials, and AssumeRole of a role in
another account returns credentials for that account, so "acting in an
account" means assuming a role there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import boto3
import pytest
from moto import mock_aws

from provisioning.spec import AccountAccess, GrantSpec

REGION = "eu-west-1"
DATALAKE_ID = "111111111111"
REMOTE_ID = "222222222222"
PROVISIONER_ROLE = "dms-access-portal-provisioner"
GRANT_ID = "1042"
ROLE_NAME = "dms-cross-account-secret-access"
ENDPOINT_ID = "source-db-mysql"
SECRET_VALUE = {"username": "dms_reader", "password": "s3cr3t-Value!", "host": "db.remote.internal", "port": 3306}
@dataclass
class World:
    """Handles on the seeded accounts; ``admin`` clients act outside the
    portal (as an account's administrator) to arrange and inspect AWS."""

    base_session: boto3.session.Session
    datalake: AccountAccess
    remote: AccountAccess
    secret_arn: str
    key_arn: str
    key_alias_arn: str
    managed_secret_arn: str
    replication_instance_arn: str
    _admin_session: boto3.session.Session = field(default_factory=lambda: boto3.session.Session(region_name=REGION))
    _admin_clients: dict = field(default_factory=dict)

    def admin(self, account_id: str, service: str):
        """A client with administrator credentials in ``account_id`` (not counted)."""
        key = (account_id, service)
        if key not in self._admin_clients:
            self._admin_clients[key] = _admin_client(self._admin_session, account_id, service)
        return self._admin_clients[key]

    def spec(self, **overrides) -> GrantSpec:
        """The runbook's request: mysql source endpoint reading the CMK secret."""
        spec = GrantSpec(
            grant_id=GRANT_ID,
            datalake=self.datalake,
            remote=self.remote,
            region=REGION,
            secret_arn=self.secret_arn,
            engine="mysql",
            endpoint_identifier=ENDPOINT_ID,
            role_name=ROLE_NAME,
            kms_key_arn=self.key_arn,
            replication_instance_arn=self.replication_instance_arn,
        )
        return replace(spec, **overrides)

    def secret_policy(self) -> dict | None:
        """The secret's resource policy as AWS holds it now."""
        text = self.admin(REMOTE_ID, "secretsmanager").get_resource_policy(SecretId=self.secret_arn).get("ResourcePolicy")
        return json.loads(text) if text else None

    def key_policy(self) -> dict:
        """The key policy as AWS holds it now."""
        return json.loads(self.admin(REMOTE_ID, "kms").get_key_policy(KeyId=self.key_arn, PolicyName="default")["Policy"])


def _admin_client(session, account_id: str, service: str):
    sts = session.client("sts", region_name=REGION)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/admin", RoleSessionName="admin")["Credentials"]
    return session.client(
        service,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


@pytest.fixture
def aws(monkeypatch):
    """moto for the whole test, never a configured endpoint."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def _seed_provisioner(world: World, account: AccountAccess) -> None:
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}],
    }
    world.admin(account.account_id, "iam").create_role(
        RoleName=PROVISIONER_ROLE, AssumeRolePolicyDocument=json.dumps(trust)
    )


def seed_world() -> World:
    """Seed the runbook's world into the moto that is active now."""
    admin_session = boto3.session.Session(region_name=REGION)
    kms = _admin_client(admin_session, REMOTE_ID, "kms")
    key = kms.create_key(Description="source-db credentials")["KeyMetadata"]
    kms.create_alias(AliasName="alias/source-db", TargetKeyId=key["KeyId"])
    sm = _admin_client(admin_session, REMOTE_ID, "secretsmanager")
    secret = sm.create_secret(
        Name="prod/source-db/credentials", KmsKeyId=key["Arn"], SecretString=json.dumps(SECRET_VALUE)
    )
    managed = sm.create_secret(Name="prod/legacy-db/credentials", SecretString=json.dumps(SECRET_VALUE))
    dms = _admin_client(admin_session, DATALAKE_ID, "dms")
    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier="datalake-replication", ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]
    world = World(
        base_session=boto3.session.Session(region_name=REGION),
        datalake=AccountAccess(
            account_id=DATALAKE_ID,
            provisioner_role_arn=f"arn:aws:iam::{DATALAKE_ID}:role/{PROVISIONER_ROLE}",
            external_id="datalake-external-id",
        ),
        remote=AccountAccess(
            account_id=REMOTE_ID, provisioner_role_arn=f"arn:aws:iam::{REMOTE_ID}:role/{PROVISIONER_ROLE}"
        ),
        secret_arn=secret["ARN"],
        key_arn=key["Arn"],
        key_alias_arn=f"arn:aws:kms:{REGION}:{REMOTE_ID}:alias/source-db",
        managed_secret_arn=managed["ARN"],
        replication_instance_arn=instance["ReplicationInstanceArn"],
        _admin_session=admin_session,
    )
    _seed_provisioner(world, world.datalake)
    _seed_provisioner(world, world.remote)
    return world


@pytest.fixture
def world(aws) -> World:
    """The seeded runbook world (fresh for every test)."""
    return seed_world()
