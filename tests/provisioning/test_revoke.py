"""Revoke: the grant's steps backwards, undoing exactly what the grant did."""

from __future__ import annotations

from provisioning.steps import GRANT_STEPS, REVOKE_STEPS, grant_secret_policy, revoke_secret_policy
from tests.provisioning.conftest import run_steps


def test_revoke_undoes_exactly_the_grant_and_can_run_twice(world, spec, clients, calls):
    before = world.state()
    run_steps(GRANT_STEPS, spec, clients)
    first = run_steps(REVOKE_STEPS, spec, clients)
    assert all(r.changed for r in first)
    assert world.state() == before

    with calls.phase("second revoke"):
        second = run_steps(REVOKE_STEPS, spec, clients)
    assert [r.changed for r in second] == [False] * len(REVOKE_STEPS)
    assert calls.writes("second revoke") == {}
    assert world.state() == before


def test_revoke_of_a_grant_that_never_ran_changes_nothing(world, spec, clients, calls):
    before = world.state()
    with calls.phase("revoke"):
        results = run_steps(REVOKE_STEPS, spec, clients)
    assert not any(r.changed for r in results)
    assert calls.writes("revoke") == {}
    assert world.state() == before


def test_the_secret_policy_is_deleted_when_the_grant_was_its_only_statement(world, spec, clients, calls):
    grant_secret_policy(spec, clients=clients)
    with calls.phase("revoke"):
        assert revoke_secret_policy(spec, clients=clients).changed
    assert calls.writes("revoke") == {"secretsmanager:DeleteResourcePolicy": 1}
    assert world.secret_policy() is None
