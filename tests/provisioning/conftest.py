"""Fixtures of the engine's tests on top of the shared moto world (tests/aws_world.py)."""
from __future__ import annotations

import pytest

from provisioning.clients import ClientFactory, GrantClients
from provisioning.spec import INSTANCE_TAG_KEY, OWNER_TAG_KEY, GrantSpec
from tests.aws_world import (  # noqa: F401  (re-exported for the engine's tests)
    DATALAKE_ID,
    ENDPOINT_ID,
    FOREIGN_KEY_STATEMENT,
    FOREIGN_SECRET_STATEMENT,
    GRANT_ID,
    INSTANCE_ID,
    PROVISIONER_ROLE,
    REGION,
    REMOTE_ID,
    ROLE_NAME,
    SECRET_VALUE,
    World,
    new_session,
)
from tests.provisioning.botocore_hooks import AwsCallCounter


def run_steps(steps, spec: GrantSpec, clients: GrantClients, **verify_options) -> list:
    """Run ``steps`` (name, function) in order; verify polls without sleeping."""
    results = []
    for name, step in steps:
        options = {"sleep": lambda _seconds: None, **verify_options} if name == "verify" else {}
        results.append(step(spec, clients=clients, **options))
    return results


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
    """The tags the suite's portal puts on what it creates for ``grant_id``."""
    return [{"Key": INSTANCE_TAG_KEY, "Value": INSTANCE_ID}, {"Key": OWNER_TAG_KEY, "Value": grant_id}]
