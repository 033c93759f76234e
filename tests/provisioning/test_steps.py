"""The grant and revoke steps against the runbook's world in moto.

moto does not evaluate IAM or resource policies, so these tests check what
the steps leave in AWS and what the portal itself refuses to do.
"""

from __future__ import annotations

import json
import threading

import pytest

from provisioning.clients import ClientFactory, GrantClients
from provisioning.errors import PermanentAwsError, RetryableAwsError
from provisioning.spec import INSTANCE_TAG_KEY, OWNER_TAG_KEY
from provisioning.steps import (
    GRANT_STEPS,
    REVOKE_STEPS,
    create_endpoint,
    create_role,
    delete_endpoint,
    delete_role,
    grant_key_policy,
    grant_secret_policy,
    revoke_key_policy,
)
from tests.provisioning.botocore_hooks import inject_error, inject_response
from tests.provisioning.conftest import (
    DATALAKE_ID,
    ENDPOINT_ID,
    FOREIGN_SECRET_STATEMENT,
    REMOTE_ID,
    ROLE_NAME,
    run_steps,
)

ROLE_ARN = f"arn:aws:iam::{DATALAKE_ID}:role/{ROLE_NAME}"


def test_the_grant_leaves_aws_in_the_runbooks_end_state(world, spec, clients):
    results = run_steps(GRANT_STEPS, spec, clients)
    assert [r.name for r in results] == [
        "create_role",
        "grant_secret_policy",
        "grant_key_policy",
        "create_endpoint",
        "verify",
    ]

    iam = world.admin(DATALAKE_ID, "iam")
    role = iam.get_role(RoleName=ROLE_NAME)["Role"]
    assert {t["Key"]: t["Value"] for t in role["Tags"]} == {INSTANCE_TAG_KEY: "testportal", OWNER_TAG_KEY: spec.grant_id}
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert "dms.amazonaws.com" in json.dumps(trust["Principal"])
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == DATALAKE_ID
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:dms:eu-west-1:{DATALAKE_ID}:endpoint:*"
    (policy_name,) = iam.list_role_policies(RoleName=ROLE_NAME)["PolicyNames"]
    inline = iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=policy_name)["PolicyDocument"]
    resources = {s["Resource"]: set(s["Action"]) for s in inline["Statement"]}
    assert resources == {
        world.secret_arn: {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
        world.key_arn: {"kms:Decrypt", "kms:DescribeKey"},
    }
    assert results[0].outputs["role_arn"] == ROLE_ARN
    assert results[0].outputs["role_id"] == role["RoleId"]

    (secret_statement,) = world.secret_policy()["Statement"]
    assert secret_statement["Principal"] == {"AWS": ROLE_ARN}
    assert set(secret_statement["Action"]) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    assert secret_statement["Resource"] == world.secret_arn

    root, ours = world.key_policy()["Statement"]
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{REMOTE_ID}:root"} and root["Action"] == "kms:*"
    assert ours["Principal"] == {"AWS": ROLE_ARN}
    assert set(ours["Action"]) == {"kms:Decrypt", "kms:DescribeKey"}
    assert ours["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}

    endpoint = world.endpoint()
    assert endpoint["EngineName"] == "mysql" and endpoint["EndpointType"].lower() == "source"
    assert endpoint["MySQLSettings"] == {
        "SecretsManagerAccessRoleArn": ROLE_ARN,
        "SecretsManagerSecretId": world.secret_arn,
    }
    assert not {"Username", "Password", "ServerName", "Port", "DatabaseName"} & set(endpoint)
    tags = world.admin(DATALAKE_ID, "dms").list_tags_for_resource(ResourceArn=endpoint["EndpointArn"])["TagList"]
    assert {(t["Key"], t["Value"]) for t in tags} == {(INSTANCE_TAG_KEY, "testportal"), (OWNER_TAG_KEY, spec.grant_id)}
    assert results[3].outputs["endpoint_arn"] == endpoint["EndpointArn"]
    assert results[4].outputs["connection_status"] == "successful"
    for result in results:
        json.dumps(result.to_dict())
        assert result.aws_request_ids


def test_running_the_grant_again_writes_nothing(world, spec, calls):
    run_steps(GRANT_STEPS, spec, GrantClients(ClientFactory(base_session=world.base_session), spec))
    state = world.state()
    with calls.phase("again"):
        again = run_steps(GRANT_STEPS, spec, GrantClients(ClientFactory(base_session=world.base_session), spec))
    assert calls.writes("again") == {}
    # The creates are tried and refused: the name taken is what sends a step to read whose it is.
    assert calls.refused("again") == {"iam:CreateRole": 1, "dms:CreateEndpoint": 1}
    assert [r.changed for r in again] == [False] * len(GRANT_STEPS)
    assert world.state() == state


def test_aws_calls_per_phase(world, spec, calls, capsys):
    """Measures the calls of each phase as a worker makes them: preflight at
    submission, the four grant steps in a fresh worker, then verify, then a
    repeated grant."""
    from provisioning.preflight import preflight

    with calls.phase("preflight"):
        preflight(spec, clients=GrantClients(ClientFactory(base_session=world.base_session), spec))
    worker = GrantClients(ClientFactory(base_session=world.base_session), spec)
    with calls.phase("grant (create_role..create_endpoint)"):
        run_steps(GRANT_STEPS[:4], spec, worker)
    with calls.phase("verify"):
        run_steps(GRANT_STEPS[4:], spec, worker)
    with calls.phase("grant again, fresh worker"):
        run_steps(GRANT_STEPS, spec, GrantClients(ClientFactory(base_session=world.base_session), spec))
    with calls.phase("revoke"):
        run_steps(REVOKE_STEPS, spec, worker)
    with capsys.disabled():
        print("\nAWS calls per phase:\n" + calls.report())

    grant = calls.phases["grant (create_role..create_endpoint)"]
    assert grant["sts:AssumeRole"] == 2
    # Each policy write reads its policy three times: to merge, right before
    # the put, and after it (the lost-update window with console edits).
    assert calls.total("grant (create_role..create_endpoint)") <= 16
    assert calls.writes("grant (create_role..create_endpoint)") == {
        "iam:CreateRole": 1,
        "iam:PutRolePolicy": 1,
        "secretsmanager:PutResourcePolicy": 1,
        "kms:PutKeyPolicy": 1,
        "dms:CreateEndpoint": 1,
    }
    assert calls.writes("preflight") == {}
    assert "sts:AssumeRole" not in calls.phases["verify"]
    assert calls.writes("grant again, fresh worker") == {}
    assert calls.refused("grant again, fresh worker") == {"iam:CreateRole": 1, "dms:CreateEndpoint": 1}


def test_foreign_statements_survive_grant_and_revoke(world, spec, clients):
    world.seed_foreign_statements()
    secret_before, key_before = world.secret_policy(), world.key_policy()

    run_steps(GRANT_STEPS, spec, clients)
    assert world.secret_policy()["Statement"][0] == FOREIGN_SECRET_STATEMENT
    assert world.key_policy()["Statement"][:2] == key_before["Statement"]
    assert len(world.secret_policy()["Statement"]) == 2 and len(world.key_policy()["Statement"]) == 3

    run_steps(REVOKE_STEPS, spec, clients)
    assert world.secret_policy() == secret_before
    assert world.key_policy() == key_before


def test_a_role_of_the_same_name_not_ours_is_never_taken_over_or_deleted(world, spec, clients, calls):
    iam = world.admin(DATALAKE_ID, "iam")
    foreign_trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(foreign_trust),
        Tags=[{"Key": OWNER_TAG_KEY, "Value": "someone-else"}],
    )
    with calls.phase("grant"), pytest.raises(PermanentAwsError) as caught:
        create_role(spec, clients=clients)
    assert caught.value.diagnosis == "role_name_taken"
    assert caught.value.aws_request_ids
    # CreateRole is refused (the name is taken), then the role is read and found not ours.
    assert calls.writes("grant") == {}
    assert calls.refused("grant") == {"iam:CreateRole": 1}
    assert "iam:GetRole" in calls.phases["grant"]

    with calls.phase("revoke"):
        result = delete_role(spec, clients=clients)
    assert not result.changed and "not owned" in result.outputs["skipped"]
    assert calls.writes("revoke") == {}
    assert world.role()["AssumeRolePolicyDocument"] == foreign_trust


def test_an_endpoint_identifier_not_ours_is_never_replaced_or_deleted(world, spec, clients, calls):
    dms = world.admin(DATALAKE_ID, "dms")
    theirs = dms.create_endpoint(
        EndpointIdentifier=ENDPOINT_ID, EndpointType="target", EngineName="postgres", DatabaseName="warehouse"
    )["Endpoint"]
    with calls.phase("grant"), pytest.raises(PermanentAwsError) as caught:
        create_endpoint(spec, clients=clients)
    assert caught.value.diagnosis == "endpoint_identifier_taken"
    assert calls.writes("grant") == {}
    assert calls.refused("grant") == {"dms:CreateEndpoint": 1}
    with calls.phase("revoke"):
        assert not delete_endpoint(spec, clients=clients).changed
    assert calls.writes("revoke") == {}
    still = world.endpoint()
    assert still["EndpointArn"] == theirs["EndpointArn"] and still["EngineName"] == "postgres"


def test_our_role_drifted_gets_back_exactly_what_differs(world, spec, clients, calls):
    create_role(spec, clients=clients)
    iam = world.admin(DATALAKE_ID, "iam")
    wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    (policy_name,) = iam.list_role_policies(RoleName=ROLE_NAME)["PolicyNames"]
    planned = iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=policy_name)["PolicyDocument"]
    iam.put_role_policy(RoleName=ROLE_NAME, PolicyName=policy_name, PolicyDocument=json.dumps(wide))

    with calls.phase("repair"):
        result = create_role(spec, clients=clients)
    assert result.changed
    assert result.before["inline_policy"] == wide
    assert calls.writes("repair") == {"iam:PutRolePolicy": 1}
    assert calls.refused("repair") == {"iam:CreateRole": 1}
    assert iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=policy_name)["PolicyDocument"] == planned


def test_an_edited_grant_statement_is_put_back_and_nothing_else_changes(world, spec, clients):
    world.seed_foreign_statements()
    grant_secret_policy(spec, clients=clients)
    policy = world.secret_policy()
    policy["Statement"][1]["Action"] = ["secretsmanager:DescribeSecret"]
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn, ResourcePolicy=json.dumps(policy)
    )
    result = grant_secret_policy(spec, clients=clients)
    assert result.changed
    assert world.secret_policy()["Statement"][0] == FOREIGN_SECRET_STATEMENT
    assert "secretsmanager:GetSecretValue" in world.secret_policy()["Statement"][1]["Action"]


def test_our_endpoint_with_other_settings_is_modified_with_only_the_difference(world, spec, clients, calls):
    old_role = f"arn:aws:iam::{DATALAKE_ID}:role/old-role"
    world.admin(DATALAKE_ID, "dms").create_endpoint(
        EndpointIdentifier=ENDPOINT_ID,
        EndpointType="source",
        EngineName="mysql",
        MySQLSettings={"SecretsManagerAccessRoleArn": old_role, "SecretsManagerSecretId": world.secret_arn},
        Tags=[{"Key": INSTANCE_TAG_KEY, "Value": spec.instance_id}, {"Key": OWNER_TAG_KEY, "Value": spec.grant_id}],
    )
    sent = []
    # moto has no ModifyEndpoint: answer it here and record what was asked.
    inject_response(world.base_session, "ModifyEndpoint", lambda params: sent.append(params) or (200, {"Endpoint": {}}))
    with calls.phase("repair"):
        result = create_endpoint(spec, clients=clients)
    assert result.changed
    assert calls.writes("repair") == {"dms:ModifyEndpoint": 1}
    assert calls.refused("repair") == {"dms:CreateEndpoint": 1}
    body = json.loads(sent[0]["body"])
    assert body["MySQLSettings"] == {
        "SecretsManagerAccessRoleArn": ROLE_ARN,
        "SecretsManagerSecretId": world.secret_arn,
    }
    assert set(body) == {"EndpointArn", "MySQLSettings"}


def test_our_endpoint_as_real_dms_describes_it_is_left_alone(world, spec, clients, calls):
    create_endpoint(spec, clients=clients)

    def as_real_dms(_params):
        endpoint = world.endpoint()
        # Real DMS answers with an upper-case type and fills in default settings.
        endpoint["EndpointType"] = "SOURCE"
        endpoint["MySQLSettings"] = {**endpoint["MySQLSettings"], "ParallelLoadThreads": 1}
        return 200, {"Endpoints": [endpoint]}

    inject_response(clients.datalake("dms"), "DescribeEndpoints", as_real_dms)
    with calls.phase("again"):
        result = create_endpoint(spec, clients=clients)
    assert not result.changed
    assert calls.writes("again") == {}
    assert calls.refused("again") == {"dms:CreateEndpoint": 1}


def test_a_merge_that_would_drop_the_keys_administrator_is_refused(world, spec, clients, calls):
    # Someone reused the grant's Sid for the only statement administering the key.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": spec.statement_sid,
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{REMOTE_ID}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    world.admin(REMOTE_ID, "kms").put_key_policy(KeyId=world.key_arn, PolicyName="default", Policy=json.dumps(policy))
    with calls.phase("grant"), pytest.raises(PermanentAwsError):
        grant_key_policy(spec, clients=clients)
    with calls.phase("revoke"), pytest.raises(PermanentAwsError):
        revoke_key_policy(spec, clients=clients)
    assert calls.writes("grant") == calls.writes("revoke") == {}
    assert world.key_policy() == policy


def test_the_secret_policy_is_read_and_written_inside_the_lock(world, spec, clients, calls):
    events = []

    class RecordingLock:
        def __init__(self, arn):
            self.arn = arn

        def __enter__(self):
            events.append(("lock", self.arn, dict(calls.phases.get(calls.current, {}))))

        def __exit__(self, *exc):
            events.append(("unlock", self.arn, dict(calls.phases.get(calls.current, {}))))

    with calls.phase("grant"):
        grant_secret_policy(spec, clients=clients, lock=RecordingLock)
    (_, arn, at_lock), (_, _, at_unlock) = events
    assert arn == world.secret_arn
    assert "secretsmanager:GetResourcePolicy" not in at_lock
    # Read to merge and read back after the put: both under the lock.
    assert at_unlock.get("secretsmanager:GetResourcePolicy") == 2
    assert at_unlock.get("secretsmanager:PutResourcePolicy") == 1
    assert at_unlock.get("secretsmanager:PutResourcePolicy") == 1


def test_concurrent_grants_on_one_secret_and_key_keep_both_statements(world, factory):
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()

    def lock(arn):
        with guard:
            return locks.setdefault(arn, threading.Lock())

    specs = [world.spec(grant_id=str(n), role_name=f"dms-secret-reader-{n}") for n in range(6)]
    barrier = threading.Barrier(len(specs))
    errors = []

    def grant(spec):
        try:
            clients = GrantClients(factory, spec)
            barrier.wait()
            grant_secret_policy(spec, clients=clients, lock=lock)
            grant_key_policy(spec, clients=clients, lock=lock)
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=grant, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert {s["Sid"] for s in world.secret_policy()["Statement"]} == {s.statement_sid for s in specs}
    assert {s["Sid"] for s in world.key_policy()["Statement"][1:]} == {s.statement_sid for s in specs}


def test_a_role_name_taken_at_create_and_gone_at_the_read_is_retried(world, spec, clients, calls):
    inject_error(world.base_session, "CreateRole", "EntityAlreadyExists", f"Role with name {ROLE_NAME} already exists.")
    with calls.phase("grant"), pytest.raises(RetryableAwsError) as caught:
        create_role(spec, clients=clients)
    assert caught.value.diagnosis == "role_name_taken"
    assert calls.phases["grant"]["iam:GetRole"] == 1
    assert calls.writes("grant") == {}


def test_an_endpoint_identifier_taken_at_create_and_free_at_the_read_is_retried(world, spec, clients, calls):
    # DMS refused the identifier (an endpoint being deleted held it); by the read it is gone.
    inject_error(world.base_session, "CreateEndpoint", "ResourceAlreadyExistsFault", "Endpoint already exists.")
    with calls.phase("grant"), pytest.raises(RetryableAwsError) as caught:
        create_endpoint(spec, clients=clients)
    assert caught.value.diagnosis == "endpoint_identifier_taken"
    assert calls.phases["grant"]["dms:DescribeEndpoints"] == 1
    assert calls.writes("grant") == {} and world.endpoint() is None
