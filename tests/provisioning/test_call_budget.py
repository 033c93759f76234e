"""The AWS calls of one grant from approval to active, step by step (issue 15, part 3).

The worker runs the apply-time preflight, then the steps, on one request's
clients from a fresh client factory (a worker that has not assumed the
provisioner roles yet). The goal is at most 16 calls, AssumeRole included;
the minimal runbook script makes 9.
"""
from __future__ import annotations

import dataclasses
import threading

from provisioning.clients import ClientFactory, GrantClients
from provisioning.preflight import preflight
from provisioning.steps import create_endpoint, create_role, grant_key_policy, grant_secret_policy, verify

CALL_BUDGET = 16


def test_a_grant_makes_at_most_16_aws_calls_assume_role_included(world, calls):
    # No replication instance: the connection test is DMS's work, which the
    # runbook script does not do either.
    spec = world.spec(kms_key_arn=None, replication_instance_arn=None)
    factory = ClientFactory(base_session=world.base_session)
    with calls.phase("preflight"):
        report = preflight(spec, clients=GrantClients(factory, spec), at_apply=True)
    assert report.ok, report.to_dict()
    assert report.kms_key_arn == world.key_arn
    spec = dataclasses.replace(spec, kms_key_arn=report.kms_key_arn)
    clients = GrantClients(factory, spec)
    with calls.phase("create_role"):
        create_role(spec, clients=clients)
    # The two policy steps run at once, on the same clients, as the runner runs them.
    with calls.phase("grant_secret_policy + grant_key_policy"):
        failures = []

        def run(step):
            try:
                step(spec, clients=clients)
            except Exception as error:  # reported by the assertion below
                failures.append(error)

        threads = [threading.Thread(target=run, args=(step,)) for step in (grant_secret_policy, grant_key_policy)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
    with calls.phase("create_endpoint"):
        create_endpoint(spec, clients=clients)
    with calls.phase("verify"):
        result = verify(spec, clients=clients)
    assert result.outputs["access"] == "allowed"

    total = sum(calls.total(name) for name in calls.phases)
    per_step = calls.report()
    assert total <= CALL_BUDGET, f"{total} AWS calls, over {CALL_BUDGET}:\n{per_step}"
    assert sum(counter["sts:AssumeRole"] for counter in calls.phases.values()) == 2, per_step
    # What each step reads is read once in the grant.
    reads = {}
    for counter in calls.phases.values():
        for operation, n in counter.items():
            reads[operation] = reads.get(operation, 0) + n
    assert reads.get("iam:GetRole", 0) == 0 and reads.get("dms:DescribeEndpoints", 0) == 0, per_step
