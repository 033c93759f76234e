"""Fixtures of the engine's tests on top of the shared moto world (tests/aws_world.py)."""
from __future__ import annotations

import pytest

from provisioning.clients import ClientFactory, GrantClients
from provisioning.spec import OWNER_TAG_KEY, GrantSpec
from tests.aws_world import (  # noqa: F401  (re-exported for the engine's tests)
    DATALAKE_ID,
    ENDPOINT_ID,
    GRANT_ID,
    PROVISIONER_ROLE,
    REGION,
    REMOTE_ID,
    ROLE_NAME,
    SECRET_VALUE,
    World,
)
from tests.provisioning.aws_calls import AwsCallCounter

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


@pytest.fixture
def calls(world) -> AwsCallCounter:
    """Counts the portal's AWS calls; set up before any client is built."""
    return AwsCallCounter(world.base_session)


@pytest.fixture
def factory(world, calls) -> ClientFactory:
    """A fresh client factory on the world's base session (its calls counted)."""
    return ClientFactory(base_session=world.base_session)


@pytest.fixture
def spec(world) -> GrantSpec:
    """The runbook's grant."""
    return world.spec()


@pytest.fixture
def clients(factory, spec) -> GrantClients:
    """The runbook grant's clients."""
    return GrantClients(factory, spec)


def owner_tags(grant_id: str = GRANT_ID) -> list[dict]:
    """The tag the portal puts on what it creates for ``grant_id``."""
    return [{"Key": OWNER_TAG_KEY, "Value": grant_id}]
