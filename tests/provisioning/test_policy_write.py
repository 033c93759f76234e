"""Edits made outside the portal while it merges into a policy (issue 19, item 5).

AWS offers no conditional put, so the portal re-reads right before each put
and merges again when the policy moved, and reads back after the put. The
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


def test_an_edit_between_the_read_and_the_put_is_merged_not_lost(world, spec, clients, kind, console):
    at_call(clients, kind, READ[kind], 1, lambda: console.add(console_statement(1)))

    result = GRANT[kind](spec, clients=clients)

    after = console.read()
    assert {"ConsoleEdit1", spec.statement_sid} <= set(sids(after))
    assert (FOREIGN_SECRET_STATEMENT if kind == "secret" else FOREIGN_KEY_STATEMENT) in after["Statement"]
    assert result.outputs["merges"] == 2
    assert "ConsoleEdit1" in sids(result.before)  # the merge was based on the policy as edited


def test_a_stale_save_right_after_the_put_is_caught_and_the_grant_merged_again(world, spec, clients, kind, console):
    seeded = console.read()
    # The administrator opened the policy before the portal's put and saves after it.
    at_call(clients, kind, PUT[kind], 1, lambda: console.add(console_statement(2), onto=seeded))

    result = GRANT[kind](spec, clients=clients)

    after = console.read()
    assert {"ConsoleEdit2", spec.statement_sid} <= set(sids(after))
    assert result.after == after


def test_a_statement_removed_right_after_the_put_is_reported_not_put_back(world, spec, clients, kind, console):
    foreign = FOREIGN_SECRET_STATEMENT if kind == "secret" else FOREIGN_KEY_STATEMENT
    at_call(clients, kind, PUT[kind], 1, lambda: console.remove(foreign["Sid"]))

    result = GRANT[kind](spec, clients=clients)

    assert foreign["Sid"] not in sids(console.read())
    assert spec.statement_sid in sids(console.read())
    assert result.outputs["missing_after_put"] == [foreign]


def test_an_edit_in_the_remaining_window_is_lost(world, spec, clients, kind, console):
    """The window the README owns up to: an edit saved between the second read and the put."""
    at_call(clients, kind, READ[kind], 2, lambda: console.add(console_statement(3)))

    GRANT[kind](spec, clients=clients)

    assert "ConsoleEdit3" not in sids(console.read())
    assert spec.statement_sid in sids(console.read())


def test_a_policy_that_keeps_changing_is_given_up_retryably_without_a_put(world, spec, clients, kind, console):
    counter = iter(range(100, 200))
    seen = at_call(clients, kind, READ[kind], 0, None)
    client = clients.remote("secretsmanager" if kind == "secret" else "kms")
    client.meta.events.register(
        "after-call", lambda model, **_: console.add(console_statement(next(counter))) if model.name == READ[kind] else None
    )
    puts = at_call(clients, kind, PUT[kind], 0, None)

    with pytest.raises(RetryableAwsError) as caught:
        GRANT[kind](spec, clients=clients)

    assert caught.value.diagnosis == "policy_changed_concurrently"
    assert puts == [] and len(seen) == 1 + MAX_MERGE_TRIES  # the first read, then one before each put
    assert spec.statement_sid not in sids(console.read())


def test_revoke_merges_with_an_edit_made_meanwhile(world, spec, clients, kind, console):
    GRANT[kind](spec, clients=clients)
    at_call(clients, kind, READ[kind], 1, lambda: console.add(console_statement(4)))

    REVOKE[kind](spec, clients=clients)

    after = console.read()
    assert "ConsoleEdit4" in sids(after) and spec.statement_sid not in sids(after)


def test_grants_and_console_edits_interleaved_lose_no_statement(world, spec, clients, kind, console):
    """Twelve grants on one policy, each with a console edit at a random moment
    outside the remaining window (seeded, so the run is the same every time):
    before the portal's first read, between its reads, or right after its put
    (a save of a policy opened before the put). Every statement is counted."""
    rng = random.Random(19)
    specs = [dataclasses.replace(spec, grant_id=str(2000 + n), role_name=f"dms-role-{n}") for n in range(12)]
    added = []
    for n, grant_spec in enumerate(specs):
        moment = rng.choice(["before", "between_reads", "stale_after_put"])
        statement = console_statement(500 + n)
        added.append(statement["Sid"])
        client = clients.remote("secretsmanager" if kind == "secret" else "kms")
        if moment == "before":
            console.add(statement)
        elif moment == "between_reads":
            hook = _once(client, READ[kind], lambda st=statement: console.add(st))
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
