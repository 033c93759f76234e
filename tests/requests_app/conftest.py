"""The cast of the domain tests: a DataLake and a Remote account with their people."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from requests_app.models import AwsAccount
from tests.factories import (
    AccessRequestFactory,
    DataLakeAccountFactory,
    RemoteAccountFactory,
    StaffFactory,
    UserFactory,
)


@dataclass
class Cast:
    requester: object
    approver: object
    second_approver: object
    outsider: object
    staff: object
    datalake: AwsAccount
    remote: AwsAccount

    def request(self, **fields):
        """A request by ``requester`` for the two accounts, awaiting approval."""
        fields.setdefault("requester", self.requester)
        fields.setdefault("datalake_account", self.datalake)
        fields.setdefault("remote_account", self.remote)
        return AccessRequestFactory(**fields)


@pytest.fixture
def cast(db) -> Cast:
    requester = UserFactory(username="dana")
    approver = UserFactory(username="rami")
    second_approver = UserFactory(username="rhea")
    return Cast(
        requester=requester,
        approver=approver,
        second_approver=second_approver,
        outsider=UserFactory(username="oscar"),
        staff=StaffFactory(username="sam"),
        datalake=DataLakeAccountFactory(account_id="111111111111", name="DataLake", requesters=[requester]),
        remote=RemoteAccountFactory(account_id="222222222222", name="Remote", approvers=[approver, second_approver]),
    )


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple[int, str]]:
    """The (request id, phase) pairs handed to the workers, instead of a broker."""
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr("requests_app.workflow.scheduling.enqueue_next_step", lambda request_id, phase: sent.append((request_id, phase)) or True)
    return sent


@pytest.fixture
def portal_aws(world):
    """The portal's client factory bound to the moto world, for the test's length."""
    from provisioning.clients import ClientFactory
    from requests_app.aws import set_client_factory

    set_client_factory(ClientFactory(base_session=world.base_session))
    yield world
    set_client_factory(None)
