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

import pytest
from moto import mock_aws
from rest_framework.test import APIClient

from provisioning.clients import ClientFactory
from requests_app.aws import set_client_factory
from requests_app.models import AwsAccount
from tests.aws_world import DATALAKE_ID, REMOTE_ID, World, seed_world
from tests.factories import StaffFactory, UserFactory, api_token_for


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
    """``client_for("riley")``: an API client sending a token of riley's (one per person)."""
    tokens: dict[str, str] = {}

    def make(name: str | None) -> APIClient:
        client = APIClient()
        if name is not None:
            if name not in tokens:
                tokens[name] = api_token_for(people[name], name="tests")
            client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[name]}")
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
