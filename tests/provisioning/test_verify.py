"""verify: the live documents evaluated together, then the DMS connection test."""

from __future__ import annotations

import json
import threading

import pytest

from provisioning.errors import PermanentAwsError, RetryableAwsError
from provisioning.steps import GRANT_STEPS, verify
from provisioning.clients import ClientFactory, GrantClients
from tests.provisioning.botocore_hooks import inject_error, inject_response
from tests.provisioning.conftest import DATALAKE_ID, REMOTE_ID, ROLE_NAME


@pytest.fixture
def granted(world, spec, clients):
    """The runbook grant applied up to its endpoint."""
    for _name, step in GRANT_STEPS[:4]:
        step(spec, clients=clients)
    return spec


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def connection(world, spec, status, message=""):
    endpoint = world.admin(DATALAKE_ID, "dms").describe_endpoints(
        Filters=[{"Name": "endpoint-id", "Values": [spec.endpoint_identifier]}]
    )["Endpoints"][0]
    return {
        "Connections": [
            {
                "EndpointArn": endpoint["EndpointArn"],
                "ReplicationInstanceArn": spec.replication_instance_arn,
                "Status": status,
                "LastFailureMessage": message,
            }
        ]
    }


def test_a_working_grant_verifies_and_its_connection_test_succeeds(world, granted, clients, calls):
    with calls.phase("verify"):
        result = verify(granted, clients=clients, sleep=Sleeps())
    assert result.outputs["access"] == "allowed"
    assert result.outputs["connection_status"] == "successful"
    assert calls.phases["verify"]["dms:TestConnection"] == 1
    assert set(result.after) == {"role_inline_policy", "secret_policy", "key_policy"}


def test_a_pair_that_already_tested_successfully_is_not_tested_again(world, granted, clients, calls):
    verify(granted, clients=clients, sleep=Sleeps())
    with calls.phase("again"):
        result = verify(granted, clients=clients, sleep=Sleeps())
    assert result.outputs["connection_status"] == "successful"
    assert "dms:TestConnection" not in calls.phases["again"]


def test_without_a_replication_instance_only_the_documents_are_checked(world, clients, calls):
    spec = world.spec(replication_instance_arn=None)
    for _name, step in GRANT_STEPS[:4]:
        step(spec, clients=clients)
    with calls.phase("verify"):
        result = verify(spec, clients=clients)
    assert "connection_status" not in result.outputs
    assert not any(op.startswith("dms:") for op in calls.phases["verify"])


def test_a_failed_connection_passes_the_dms_message_through(world, granted, clients):
    message = "Cannot connect to MySQL: Can't connect to server on 'db.remote.internal' (110)"
    inject_response(
        clients.datalake("dms"),
        "DescribeConnections",
        lambda _params: (200, connection(world, granted, "failed", message)),
    )
    with pytest.raises(PermanentAwsError) as caught:
        verify(granted, clients=clients, sleep=Sleeps())
    assert caught.value.diagnosis == "connection_failed"
    assert message in caught.value.message
    assert caught.value.aws_request_ids


def test_a_test_still_running_is_polled_at_the_given_interval(world, granted, clients):
    # Before the test: moto's answer (no connection yet); then "testing"
    # twice; then moto's answer again ("successful").
    answers = iter([None, "testing", "testing"])

    def still_testing(_params):
        status = next(answers, None)
        return None if status is None else (200, connection(world, granted, status))

    inject_response(clients.datalake("dms"), "DescribeConnections", still_testing)
    sleeps = Sleeps()
    result = verify(granted, clients=clients, sleep=sleeps, poll_interval=0.25)
    assert result.outputs["connection_status"] == "successful"
    assert sleeps == [0.25, 0.25]


def test_a_test_that_never_finishes_gives_up_after_the_poll_budget(world, granted, clients):
    inject_response(
        clients.datalake("dms"), "DescribeConnections", lambda _params: (200, connection(world, granted, "testing"))
    )
    sleeps = Sleeps()
    with pytest.raises(RetryableAwsError) as caught:
        verify(granted, clients=clients, sleep=sleeps, poll_interval=1, max_polls=4)
    assert caught.value.diagnosis == "connection_failed"
    assert sleeps == [1, 1, 1]


def test_a_secret_policy_without_the_grant_is_secret_policy_denies(world, granted, clients):
    world.admin(REMOTE_ID, "secretsmanager").delete_resource_policy(SecretId=world.secret_arn)
    with pytest.raises(PermanentAwsError) as caught:
        verify(granted, clients=clients, sleep=Sleeps())
    assert caught.value.diagnosis == "secret_policy_denies"


def test_a_key_policy_without_the_grant_is_key_policy_denies(world, granted, clients):
    policy = world.key_policy()
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != granted.statement_sid]
    world.admin(REMOTE_ID, "kms").put_key_policy(KeyId=world.key_arn, PolicyName="default", Policy=json.dumps(policy))
    with pytest.raises(PermanentAwsError) as caught:
        verify(granted, clients=clients, sleep=Sleeps())
    assert caught.value.diagnosis == "key_policy_denies"


def test_a_role_without_its_inline_policy_is_identity_policy_denies(world, granted, clients):
    iam = world.admin(DATALAKE_ID, "iam")
    for name in iam.list_role_policies(RoleName=ROLE_NAME)["PolicyNames"]:
        iam.delete_role_policy(RoleName=ROLE_NAME, PolicyName=name)
    with pytest.raises(PermanentAwsError) as caught:
        verify(granted, clients=clients, sleep=Sleeps())
    assert caught.value.diagnosis == "identity_policy_denies"


def test_an_explicit_deny_in_the_secret_policy_wins(world, granted, clients):
    policy = world.secret_policy()
    policy["Statement"].append(
        {
            "Sid": "NoDms",
            "Effect": "Deny",
            "Principal": {"AWS": granted.role_arn},
            "Action": "secretsmanager:*",
            "Resource": "*",
        }
    )
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn, ResourcePolicy=json.dumps(policy)
    )
    with pytest.raises(PermanentAwsError) as caught:
        verify(granted, clients=clients, sleep=Sleeps())
    assert caught.value.diagnosis == "secret_policy_denies"


def test_the_documents_and_the_endpoint_are_read_at_once_each_once(world, granted, clients, calls):
    reads = {"GetRolePolicy", "GetResourcePolicy", "GetKeyPolicy", "DescribeEndpoints"}
    barrier = threading.Barrier(len(reads))

    def meet(model, **_):
        if model.name in reads:
            barrier.wait(timeout=5)  # a run making them one after another breaks the barrier

    world.base_session.events.register("before-call", meet)
    with calls.phase("verify"):
        result = verify(granted, clients=GrantClients(ClientFactory(base_session=world.base_session), granted),
                        sleep=Sleeps())  # fmt: skip
    assert result.outputs["access"] == "allowed"
    made = calls.phases["verify"]
    assert all(made[f"{service}:{name}"] == 1 for service, name in (
        ("iam", "GetRolePolicy"), ("secretsmanager", "GetResourcePolicy"), ("kms", "GetKeyPolicy"),
        ("dms", "DescribeEndpoints"),
    ))  # fmt: skip
    assert len(result.aws_request_ids) == sum(made.values()) - made["sts:AssumeRole"]


def test_a_denial_is_reported_before_a_failed_endpoint_read(world, granted, clients):
    world.admin(DATALAKE_ID, "iam").delete_role_policy(RoleName=ROLE_NAME, PolicyName=_inline_policy_name(world))
    inject_error(world.base_session, "DescribeEndpoints", "AccessDeniedFault", "not authorized", status=400)
    with pytest.raises(PermanentAwsError) as caught:
        verify(granted, clients=GrantClients(ClientFactory(base_session=world.base_session), granted), sleep=Sleeps())
    assert caught.value.diagnosis == "identity_policy_denies"
    assert caught.value.aws_request_ids


def _inline_policy_name(world) -> str:
    (name,) = world.admin(DATALAKE_ID, "iam").list_role_policies(RoleName=ROLE_NAME)["PolicyNames"]
    return name
