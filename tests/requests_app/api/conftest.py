"""The API's test world: the runbook's two accounts registered in the portal,
the people around them, and moto playing AWS behind the provisioner roles.

People: riley files for the DataLake account; avery approves for the Remote
account; dana approves for the DataLake account (so sees its requests but may
not approve them); olive belongs to no account; sam is staff.
"""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from provisioning.clients import ClientFactory
from requests_app.aws import set_client_factory
from requests_app.models import AwsAccount
from tests.aws_world import DATALAKE_ID, REMOTE_ID, World


@pytest.fixture
def people(db) -> dict:
    user_model = get_user_model()
    people = {name: user_model.objects.create_user(name, password=f"{name}-password") for name in
              ("riley", "avery", "dana", "olive")}
    people["sam"] = user_model.objects.create_user("sam", password="sam-password", is_staff=True)
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
