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
from dataclasses import dataclass, replace

import boto3
import botocore.session
import pytest
from moto import mock_aws

from provisioning.spec import AccountAccess, GrantSpec

REGION = "eu-west-1"
DATALAKE_ID = "111111111111"
REMOTE_ID = "222222222222"
PROVISIONER_ROLE = "dms-access-portal-provisioner"
GRANT_ID = "1042"
# The suite's PORTAL_INSTANCE_ID (set in tests/conftest.py).
INSTANCE_ID = "testportal"
ROLE_NAME = "dms-cross-account-secret-access"
ENDPOINT_ID = "source-db-mysql"
SECRET_VALUE = {"username": "dms_reader", "password": "s3cr3t-Value!", "host": "db.remote.internal", "port": 3306}
# A statement someone else put on the secret and the key before the portal came.
FOREIGN_SECRET_STATEMENT = {
    "Sid": "AuditorsMayDescribe",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::333333333333:role/auditor"},
    "Action": "secretsmanager:DescribeSecret",
    "Resource": "*",
}
FOREIGN_KEY_STATEMENT = {
    "Sid": "BackupMayEncrypt",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::222222222222:role/backup"},
    "Action": ["kms:Encrypt", "kms:GenerateDataKey*"],
    "Resource": "*",
}


_LOADER = botocore.session.get_session().get_component("data_loader")


def new_session() -> boto3.session.Session:
    """A new boto3 session (as a new process would have) that reuses the
    already parsed service models, which would otherwise cost most of a
    test's time."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return boto3.session.Session(region_name=REGION, botocore_session=core)


class Admin:
    """Clients with administrator credentials in any account, outside the
    portal (not counted), to arrange and inspect AWS."""

    def __init__(self, session: boto3.session.Session):
        self._session = session
        self._sts = session.client("sts", region_name=REGION)
        self._clients: dict = {}

    def __call__(self, account_id: str, service: str):
        key = (account_id, service)
        if key not in self._clients:
            creds = self._sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/admin", RoleSessionName="admin")[
                "Credentials"
            ]
            self._clients[key] = self._session.client(
                service,
                region_name=REGION,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
        return self._clients[key]


@dataclass
class World:
    """Handles on the seeded accounts; ``admin(account, service)`` acts as
    an account's administrator."""

    admin: Admin
    base_session: boto3.session.Session
    datalake: AccountAccess
    remote: AccountAccess
    secret_arn: str
    key_arn: str
    key_alias_arn: str
    managed_secret_arn: str
    replication_instance_arn: str

    def spec(self, **overrides) -> GrantSpec:
        """The runbook's request: mysql source endpoint reading the CMK secret."""
        spec = GrantSpec(
            grant_id=GRANT_ID,
            instance_id=INSTANCE_ID,
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
        text = (
            self.admin(REMOTE_ID, "secretsmanager").get_resource_policy(SecretId=self.secret_arn).get("ResourcePolicy")
        )
        return json.loads(text) if text else None

    def key_policy(self) -> dict:
        """The key policy as AWS holds it now."""
        return json.loads(
            self.admin(REMOTE_ID, "kms").get_key_policy(KeyId=self.key_arn, PolicyName="default")["Policy"]
        )

    def endpoint(self, identifier: str = ENDPOINT_ID) -> dict | None:
        """The DMS endpoint ``identifier`` in the DataLake account, or None."""
        endpoints = self.admin(DATALAKE_ID, "dms").describe_endpoints(
            Filters=[{"Name": "endpoint-id", "Values": [identifier]}]
        )["Endpoints"]
        return endpoints[0] if endpoints else None

    def role(self, name: str = ROLE_NAME) -> dict | None:
        """The IAM role ``name`` in the DataLake account, or None."""
        iam = self.admin(DATALAKE_ID, "iam")
        try:
            return iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            return None

    def state(self) -> dict:
        """Everything a grant touches, as the accounts' administrators see it."""
        role, endpoint = self.role(), self.endpoint()
        return {
            "role": None
            if role is None
            else (role["Arn"], json.dumps(role["AssumeRolePolicyDocument"], sort_keys=True)),
            "secret_policy": self.secret_policy(),
            "key_policy": self.key_policy(),
            "endpoint": None if endpoint is None else endpoint["EndpointArn"],
        }

    def seed_foreign_statements(self) -> None:
        """Put someone else's statements on the secret and the key, as a
        Remote account usually has before the portal comes."""
        self.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
            SecretId=self.secret_arn,
            ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN_SECRET_STATEMENT]}),
        )
        key_policy = self.key_policy()
        key_policy["Statement"].append(FOREIGN_KEY_STATEMENT)
        self.admin(REMOTE_ID, "kms").put_key_policy(
            KeyId=self.key_arn, PolicyName="default", Policy=json.dumps(key_policy)
        )


@pytest.fixture(autouse=True, scope="session")
def _dms_refuses_taken_endpoint_identifiers():
    """DMS answers CreateEndpoint with ResourceAlreadyExistsFault when the
    identifier is taken; moto replaces the endpoint instead, whoever's it is
    (reference/aws-facts.md, section 6). Make moto, in-process and the
    server this process runs, answer as DMS does."""
    from moto.dms.exceptions import ResourceAlreadyExistsFault
    from moto.dms.models import DatabaseMigrationServiceBackend

    original = DatabaseMigrationServiceBackend.create_endpoint

    def create_endpoint(self, *args, **kwargs):
        identifier = kwargs["endpoint_identifier"]
        if any(taken.lower() == identifier.lower() for taken in self.endpoints):
            raise ResourceAlreadyExistsFault(f"The endpoint identifier {identifier} is already in use.")
        return original(self, *args, **kwargs)

    DatabaseMigrationServiceBackend.create_endpoint = create_endpoint
    yield
    DatabaseMigrationServiceBackend.create_endpoint = original


@pytest.fixture
def aws(monkeypatch):
    """moto for the whole test, never a configured endpoint."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def _seed_provisioner(admin: Admin, account_id: str) -> AccountAccess:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = admin(account_id, "iam").create_role(RoleName=PROVISIONER_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    return AccountAccess(account_id=account_id, provisioner_role_arn=role["Role"]["Arn"])


def seed_world() -> World:
    """Seed the runbook's world into the moto that is active now."""
    admin = Admin(new_session())
    kms = admin(REMOTE_ID, "kms")
    key = kms.create_key(Description="source-db credentials")["KeyMetadata"]
    kms.create_alias(AliasName="alias/source-db", TargetKeyId=key["KeyId"])
    secretsmanager = admin(REMOTE_ID, "secretsmanager")
    secret = secretsmanager.create_secret(
        Name="prod/source-db/credentials", KmsKeyId=key["Arn"], SecretString=json.dumps(SECRET_VALUE)
    )
    managed = secretsmanager.create_secret(Name="prod/legacy-db/credentials", SecretString=json.dumps(SECRET_VALUE))
    instance = admin(DATALAKE_ID, "dms").create_replication_instance(
        ReplicationInstanceIdentifier="datalake-replication", ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]
    datalake = _seed_provisioner(admin, DATALAKE_ID)
    return World(
        admin=admin,
        base_session=new_session(),
        datalake=replace(datalake, external_id="datalake-external-id"),
        remote=_seed_provisioner(admin, REMOTE_ID),
        secret_arn=secret["ARN"],
        key_arn=key["Arn"],
        key_alias_arn=f"arn:aws:kms:{REGION}:{REMOTE_ID}:alias/source-db",
        managed_secret_arn=managed["ARN"],
        replication_instance_arn=instance["ReplicationInstanceArn"],
    )


@pytest.fixture
def world(aws) -> World:
    """The seeded runbook world (fresh for every test)."""
    return seed_world()
