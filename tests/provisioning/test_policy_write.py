"""Edits made outside the portal while it merges into a policy (issue 19, item 5).

AWS offers no conditional put, so the portal reads back after each put and
merges again when another writer's stale save undid its change. The
console edits here are made by the Remote account's administrator at exact
moments of the portal's write (botocore hooks on the portal's client), and
the statements that survive are counted.
"""
from __future__ import annotations

import dataclasses
import json
import random

import pytest

from provisioning.errors import RetryableAwsError
from provisioning.steps.policy_write import MAX_MERGE_TRIES
from provisioning.steps import grant_key_policy, grant_secret_policy, revoke_key_policy, revoke_secret_policy
from tests.provisioning.conftest import FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, REMOTE_ID


def console_statement(n: int) -> dict:
    return {
        "Sid": f"ConsoleEdit{n}",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{REMOTE_ID}:role/console-{n}"},
        "Action": "secretsmanager:DescribeSecret",
        "Resource": "*",
    }


class Console:
    """The Remote account's administrator editing the secret or key policy by hand."""

    def __init__(self, world, kind: str):
        self.world = world
        self.kind = kind

    def read(self) -> dict:
        if self.kind == "secret":
            return self.world.secret_policy() or {"Version": "2012-10-17", "Statement": []}
        return self.world.key_policy()

    def put(self, policy: dict) -> None:
        if self.kind == "secret":
            self.world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
                SecretId=self.world.secret_arn, ResourcePolicy=json.dumps(policy)
            )
        else:
            self.world.admin(REMOTE_ID, "kms").put_key_policy(
                KeyId=self.world.key_arn, PolicyName="default", Policy=json.dumps(policy)
            )

    def add(self, statement: dict, *, onto: dict | None = None) -> None:
        """Add ``statement`` to the policy as read now (or as read earlier: ``onto``)."""
        policy = json.loads(json.dumps(onto)) if onto is not None else self.read()
        policy["Statement"].append(statement)
        self.put(policy)

    def remove(self, sid: str) -> None:
        policy = self.read()
        policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != sid]
        self.put(policy)


READ = {"secret": "GetResourcePolicy", "key": "GetKeyPolicy"}
PUT = {"secret": "PutResourcePolicy", "key": "PutKeyPolicy"}
GRANT = {"secret": grant_secret_policy, "key": grant_key_policy}
REVOKE = {"secret": revoke_secret_policy, "key": revoke_key_policy}


def at_call(clients, kind: str, operation: str, nth: int, action) -> list:
    """Run ``action()`` right after the portal's ``nth`` call of ``operation`` (1-based) returned."""
    client = clients.remote("secretsmanager" if kind == "secret" else "kms")
    seen = []

    def hook(model, **_):
        if model.name == operation:
            seen.append(operation)
            if len(seen) == nth:
                action()

    client.meta.events.register("after-call", hook)
    return seen


def sids(policy) -> list[str]:
    return [statement.get("Sid") for statement in (policy or {}).get("Statement", [])]


@pytest.fixture(params=["secret", "key"])
def kind(request):
    return request.param


@pytest.fixture
def console(world, kind):
    world.seed_foreign_statements()
    return Console(world, kind)


def test_a_stale_save_right_after_the_put_is_caught_and_the_grant_merged_again(world, spec, clients, kind, console):
    seeded = console.read()
    # The administrator opened the policy before the portal's put and saves after it.
    at_call(clients, kind, PUT[kind], 1, lambda: console.add(console_statement(2), onto=seeded))

    result = GRANT[kind](spec, clients=clients)

    after = console.read()
    assert {"ConsoleEdit2", spec.statement_sid} <= set(sids(after))
    assert result.after == after
    assert result.outputs["merges"] == 2
    assert "ConsoleEdit2" in sids(result.before)  # the second merge was based on the policy as saved


def test_a_statement_removed_right_after_the_put_is_reported_not_put_back(world, spec, clients, kind, console):
    foreign = FOREIGN_SECRET_STATEMENT if kind == "secret" else FOREIGN_KEY_STATEMENT
    at_call(clients, kind, PUT[kind], 1, lambda: console.remove(foreign["Sid"]))

    result = GRANT[kind](spec, clients=clients)

    assert foreign["Sid"] not in sids(console.read())
    assert spec.statement_sid in sids(console.read())
    assert result.outputs["missing_after_put"] == [foreign]


def test_an_edit_in_the_remaining_window_is_lost(world, spec, clients, kind, console):
    """The window the README owns up to: an edit saved between the read and the put."""
    at_call(clients, kind, READ[kind], 1, lambda: console.add(console_statement(3)))

    GRANT[kind](spec, clients=clients)

    assert "ConsoleEdit3" not in sids(console.read())
    assert spec.statement_sid in sids(console.read())


def test_the_write_reads_once_before_its_put_and_once_after(world, spec, clients, kind, console):
    reads = at_call(clients, kind, READ[kind], 0, None)
    puts = at_call(clients, kind, PUT[kind], 0, None)

    GRANT[kind](spec, clients=clients)

    assert (len(reads), len(puts)) == (2, 1)


def test_a_change_undone_after_every_put_is_given_up_retryably(world, spec, clients, kind, console):
    opened = console.read()
    counter = iter(range(100, 200))
    # Every put of the portal is followed by a save of the policy as opened before it.
    puts = at_call(clients, kind, PUT[kind], 0, None)
    client = clients.remote("secretsmanager" if kind == "secret" else "kms")
    client.meta.events.register(
        "after-call",
        lambda model, **_: console.add(console_statement(next(counter)), onto=opened) if model.name == PUT[kind] else None,
    )

    with pytest.raises(RetryableAwsError) as caught:
        GRANT[kind](spec, clients=clients)

    assert caught.value.diagnosis == "policy_changed_concurrently"
    assert len(puts) == MAX_MERGE_TRIES
    assert spec.statement_sid not in sids(console.read())


def test_revoke_merges_with_a_save_made_right_after_its_put(world, spec, clients, kind, console):
    GRANT[kind](spec, clients=clients)
    opened = console.read()
    # A save of the policy as opened before the revoke's put: it brings the grant's statement back.
    at_call(clients, kind, PUT[kind], 1, lambda: console.add(console_statement(4), onto=opened))

    result = REVOKE[kind](spec, clients=clients)

    after = console.read()
    assert "ConsoleEdit4" in sids(after) and spec.statement_sid not in sids(after)
    assert result.outputs["merges"] == 2


def test_grants_and_console_edits_interleaved_lose_no_statement(world, spec, clients, kind, console):
    """Twelve grants on one policy, each with a console edit at a random moment
    outside the remaining window (seeded, so the run is the same every time):
    before the portal's read, or right after its put (a save of a policy
    opened before the put). Every statement is counted."""
    rng = random.Random(19)
    specs = [dataclasses.replace(spec, grant_id=str(2000 + n), role_name=f"dms-role-{n}") for n in range(12)]
    added = []
    for n, grant_spec in enumerate(specs):
        moment = rng.choice(["before", "stale_after_put"])
        statement = console_statement(500 + n)
        added.append(statement["Sid"])
        client = clients.remote("secretsmanager" if kind == "secret" else "kms")
        if moment == "before":
            console.add(statement)
        else:
            opened = console.read()
            hook = _once(client, PUT[kind], lambda st=statement, opened=opened: console.add(st, onto=opened))
        GRANT[kind](grant_spec, clients=clients)
        if moment != "before":
            client.meta.events.unregister("after-call", hook)

    final = set(sids(console.read()))
    lost_console = [sid for sid in added if sid not in final]
    lost_portal = [s.statement_sid for s in specs if s.statement_sid not in final]
    assert (lost_console, lost_portal) == ([], [])


def _once(client, operation: str, action):
    done = []

    def hook(model, **_):
        if model.name == operation and not done:
            done.append(True)
            action()

    client.meta.events.register("after-call", hook)
    return hook
