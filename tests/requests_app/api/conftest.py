"""The API's test world: the runbook's two accounts registered in the portal,
the people around them, and moto playing AWS behind the provisioner roles.

The API only reads AWS (preflight at submission; no worker runs here, the
steps are queued after a commit that the test transaction never makes), so
one seeded moto world serves every test of this package: seeding it costs
seconds, the tests milliseconds.

People: riley files for the DataLake account; avery approves for the Remote
account; dana approves for the DataLake account (so sees its requests but may
not approve them); olive belongs to no account; sam is staff.
"""
from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from provisioning.clients import ClientFactory
from provisioning.spec import AccountAccess
from requests_app.aws import set_client_factory
from requests_app.models import AwsAccount
from tests.factories import StaffFactory, UserFactory
from tests.aws_world import (
    DATALAKE_ID,
    PROVISIONER_ROLE,
    REGION,
    REMOTE_ID,
    SECRET_VALUE,
    World,
    _admin_client,
    _seed_provisioner,
)


def seed_world() -> World:
    """The runbook's world, as tests/provisioning seeds it (inside mock_aws)."""
    admin_session = boto3.session.Session(region_name=REGION)
    kms = _admin_client(admin_session, REMOTE_ID, "kms")
    key = kms.create_key(Description="source-db credentials")["KeyMetadata"]
    kms.create_alias(AliasName="alias/source-db", TargetKeyId=key["KeyId"])
    secrets = _admin_client(admin_session, REMOTE_ID, "secretsmanager")
    secret = secrets.create_secret(
        Name="prod/source-db/credentials", KmsKeyId=key["Arn"], SecretString=json.dumps(SECRET_VALUE)
    )
    managed = secrets.create_secret(Name="prod/legacy-db/credentials", SecretString=json.dumps(SECRET_VALUE))
    instance = _admin_client(admin_session, DATALAKE_ID, "dms").create_replication_instance(
        ReplicationInstanceIdentifier="datalake-replication", ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]
    world = World(
        base_session=boto3.session.Session(region_name=REGION),
        datalake=AccountAccess(
            account_id=DATALAKE_ID,
            provisioner_role_arn=f"arn:aws:iam::{DATALAKE_ID}:role/{PROVISIONER_ROLE}",
            external_id="datalake-external-id",
        ),
        remote=AccountAccess(account_id=REMOTE_ID, provisioner_role_arn=f"arn:aws:iam::{REMOTE_ID}:role/{PROVISIONER_ROLE}"),
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


@pytest.fixture(scope="package")
def world():
    """One moto world for the whole API package (read-only for these tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            yield seed_world()


@pytest.fixture
def people(db) -> dict:
    people = {name: UserFactory(username=name) for name in ("riley", "avery", "dana", "olive")}
    people["sam"] = StaffFactory(username="sam")
    return people


@pytest.fixture
def accounts(people, world: World) -> dict[str, AwsAccount]:
    datalake = AwsAccount.objects.create(
        account_id=DATALAKE_ID,
        name="DataLake",
        is_datalake=True,
        provisioner_role_arn=world.datalake.provisioner_role_arn,
        external_id=world.datalake.external_id or "",
    )
    datalake.requesters.set([people["riley"]])
    datalake.approvers.set([people["dana"]])
    remote = AwsAccount.objects.create(
        account_id=REMOTE_ID,
        name="Remote",
        is_remote=True,
        provisioner_role_arn=world.remote.provisioner_role_arn,
    )
    remote.approvers.set([people["avery"]])
    return {"datalake": datalake, "remote": remote}


@pytest.fixture
def portal(accounts, world: World):
    """The registered world, with the portal's AWS clients pointed at moto."""
    previous = set_client_factory(ClientFactory(base_session=world.base_session))
    yield world
    set_client_factory(previous)


@pytest.fixture
def client_for(people):
    """``client_for("riley")``: an API client sending riley's token."""

    def make(name: str | None) -> APIClient:
        client = APIClient()
        if name is not None:
            token, _ = Token.objects.get_or_create(user=people[name])
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def submit_body(world: World) -> dict:
    """The runbook's request, as a requester would send it."""
    return {
        "datalake_account": DATALAKE_ID,
        "secret_arn": world.secret_arn,
        "engine": "mysql",
        "endpoint_identifier": "source-db-mysql",
        "replication_instance_arn": world.replication_instance_arn,
        "justification": "Nightly CDC of the orders database into the lake.",
    }


@pytest.fixture
def filed(portal, client_for, submit_body) -> dict:
    """riley's runbook request, filed through the API (pending approval)."""
    response = client_for("riley").post("/api/v1/requests/", submit_body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()
