"""The runbook's AWS world on a moto server shared with the worker processes.

Remote (222222222222): the customer-managed key with the runbook's key policy
(root statement) plus a foreign statement, and the secret
prod/source-db/credentials under that key, holding a JSON value and a
foreign resource-policy statement. DataLake (111111111111): a replication
instance. moto chooses the account from the credentials, and assuming a role
in an account yields credentials for that account, so an administrator "in"
an account is an assumed role there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import boto3

from tests.requests_app.rows import DATALAKE_ID, REMOTE_ID

REGION = "eu-west-1"
SECRET_VALUE = {"username": "dms_reader", "password": "s3cr3t-Value!", "host": "db.remote.internal", "port": 3306}
FOREIGN_SECRET_STATEMENT = {
    "Sid": "AuditorsMayDescribe",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::333333333333:role/auditor"},
    "Action": "secretsmanager:DescribeSecret",
    "Resource": "*",
}
ROOT_KEY_STATEMENT = {
    "Sid": "EnableRootPermissions",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{REMOTE_ID}:root"},
    "Action": "kms:*",
    "Resource": "*",
}
FOREIGN_KEY_STATEMENT = {
    "Sid": "BackupMayEncrypt",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{REMOTE_ID}:role/backup"},
    "Action": ["kms:Encrypt", "kms:GenerateDataKey*"],
    "Resource": "*",
}


@dataclass
class World:
    endpoint_url: str
    secret_arn: str = ""
    key_arn: str = ""
    replication_instance_arn: str = ""
    _clients: dict = field(default_factory=dict)

    def admin(self, account_id: str, service: str):
        """A client acting as an administrator of ``account_id`` (outside the portal)."""
        key = (account_id, service)
        if key not in self._clients:
            session = boto3.session.Session(region_name=REGION)
            sts = session.client("sts", endpoint_url=self.endpoint_url)
            creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/admin", RoleSessionName="admin")[
                "Credentials"
            ]
            self._clients[key] = session.client(
                service,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
        return self._clients[key]

    def secret_policy(self) -> dict:
        text = self.admin(REMOTE_ID, "secretsmanager").get_resource_policy(SecretId=self.secret_arn).get("ResourcePolicy")
        return json.loads(text) if text else {"Statement": []}

    def key_policy(self) -> dict:
        kms = self.admin(REMOTE_ID, "kms")
        return json.loads(kms.get_key_policy(KeyId=self.key_arn, PolicyName="default")["Policy"])

    def role(self, role_name: str) -> dict | None:
        iam = self.admin(DATALAKE_ID, "iam")
        try:
            return iam.get_role(RoleName=role_name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            return None

    def inline_policies(self, role_name: str) -> dict[str, dict]:
        iam = self.admin(DATALAKE_ID, "iam")
        names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
        return {name: _document(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]) for name in names}

    def endpoints(self, identifier: str) -> list[dict]:
        dms = self.admin(DATALAKE_ID, "dms")
        endpoints = dms.describe_endpoints()["Endpoints"]
        return [endpoint for endpoint in endpoints if endpoint["EndpointIdentifier"] == identifier]


def _document(value) -> dict:
    return json.loads(value) if isinstance(value, str) else value


def seed_world(endpoint_url: str) -> World:
    world = World(endpoint_url=endpoint_url)
    kms = world.admin(REMOTE_ID, "kms")
    key_policy = {
        "Version": "2012-10-17",
        "Id": "key-policy-source-db-credentials",
        "Statement": [ROOT_KEY_STATEMENT, FOREIGN_KEY_STATEMENT],
    }
    key = kms.create_key(Description="source-db credentials", Policy=json.dumps(key_policy))["KeyMetadata"]
    kms.create_alias(AliasName="alias/source-db", TargetKeyId=key["KeyId"])
    world.key_arn = key["Arn"]

    secrets = world.admin(REMOTE_ID, "secretsmanager")
    secret = secrets.create_secret(
        Name="prod/source-db/credentials", KmsKeyId=key["Arn"], SecretString=json.dumps(SECRET_VALUE)
    )
    world.secret_arn = secret["ARN"]
    secrets.put_resource_policy(
        SecretId=world.secret_arn,
        ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN_SECRET_STATEMENT]}),
    )

    dms = world.admin(DATALAKE_ID, "dms")
    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier="datalake-replication", ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]
    world.replication_instance_arn = instance["ReplicationInstanceArn"]
    return world
