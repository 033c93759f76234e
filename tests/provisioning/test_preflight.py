"""Preflight: what an approver is told before anything changes in AWS."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from provisioning.errors import PermanentAwsError, RetryableAwsError
from provisioning.preflight import preflight
from provisioning.steps import GRANT_STEPS
from tests.provisioning.botocore_hooks import inject_error, inject_response
from tests.provisioning.conftest import DATALAKE_ID, ENDPOINT_ID, REGION, REMOTE_ID, ROLE_NAME, SECRET_VALUE


def failed(report) -> dict[str, str]:
    return {check.name: check.diagnosis for check in report.checks if not check.ok}


def new_secret(world, name, value, **kwargs) -> str:
    secret_string = value if isinstance(value, str) else json.dumps(value)
    return world.admin(REMOTE_ID, "secretsmanager").create_secret(Name=name, SecretString=secret_string, **kwargs)[
        "ARN"
    ]


def test_the_runbooks_request_passes_every_check_without_writing(world, spec, clients, calls):
    with calls.phase("preflight"):
        report = preflight(spec, clients=clients)
    assert report.ok, report.to_dict()
    assert report.diagnosis is None
    assert report.kms_key_arn == world.key_arn
    assert [c.name for c in report.checks] == [
        "request_valid",
        "provisioner_roles",
        "secret_exists",
        "customer_managed_key",
        "key_usable",
        "key_matches",
        "role_name_available",
        "endpoint_identifier_available",
        "policy_sizes",
    ]
    assert calls.writes("preflight") == {}
    assert report.secret_keys is None
    json.dumps(report.to_dict())


def test_a_request_without_a_key_learns_the_secrets_key_arn(world, clients):
    report = preflight(world.spec(kms_key_arn=None), clients=clients)
    assert report.ok
    assert report.kms_key_arn == world.key_arn


def test_a_key_named_by_alias_is_resolved_and_matches(world, clients):
    report = preflight(world.spec(kms_key_arn=world.key_alias_arn), clients=clients)
    assert report.ok
    assert report.kms_key_arn == world.key_arn


def test_a_secret_under_the_aws_managed_key_cannot_be_granted(world, clients):
    report = preflight(world.spec(secret_arn=world.managed_secret_arn, kms_key_arn=None), clients=clients)
    assert not report.ok
    assert report.diagnosis == "aws_managed_key"
    assert report.kms_key_arn is None


def test_a_secret_naming_the_aws_secretsmanager_alias_cannot_be_granted(world, clients):
    arn = new_secret(world, "prod/explicit-default", SECRET_VALUE, KmsKeyId="alias/aws/secretsmanager")
    report = preflight(world.spec(secret_arn=arn, kms_key_arn=None), clients=clients)
    assert report.diagnosis == "aws_managed_key"


def test_a_key_kms_reports_as_aws_managed_cannot_be_granted(world, spec, clients):
    # moto reports every key as CUSTOMER; real KMS says AWS for aws/secretsmanager.
    def aws_managed(_params):
        metadata = world.admin(REMOTE_ID, "kms").describe_key(KeyId=world.key_arn)["KeyMetadata"]
        return 200, {"KeyMetadata": {**metadata, "KeyManager": "AWS"}}

    inject_response(world.base_session, "DescribeKey", aws_managed)
    report = preflight(spec, clients=clients)
    assert failed(report) == {"customer_managed_key": "aws_managed_key"}


def test_a_disabled_key_is_not_usable(world, spec, clients):
    world.admin(REMOTE_ID, "kms").disable_key(KeyId=world.key_arn.rsplit("/", 1)[1])  # moto wants the bare id
    report = preflight(spec, clients=clients)
    assert failed(report) == {"key_usable": "key_not_usable"}


def test_an_asymmetric_key_is_not_usable(world, clients):
    kms = world.admin(REMOTE_ID, "kms")
    rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    arn = new_secret(world, "prod/rsa", SECRET_VALUE, KmsKeyId=rsa["Arn"])
    report = preflight(world.spec(secret_arn=arn, kms_key_arn=None), clients=clients)
    assert failed(report) == {"key_usable": "key_not_usable"}


def test_a_named_key_that_is_not_the_secrets_key_is_a_mismatch(world, clients):
    other = world.admin(REMOTE_ID, "kms").create_key(Description="another CMK")["KeyMetadata"]["Arn"]
    report = preflight(world.spec(kms_key_arn=other), clients=clients)
    assert failed(report) == {"key_matches": "key_mismatch"}


def test_a_named_alias_that_does_not_exist_is_a_mismatch(world, clients):
    report = preflight(world.spec(kms_key_arn=f"arn:aws:kms:{REGION}:{REMOTE_ID}:alias/nothing"), clients=clients)
    assert failed(report) == {"key_matches": "key_mismatch"}


def test_a_named_key_in_another_account_is_refused_before_asking_aws(world, clients, calls):
    elsewhere = f"arn:aws:kms:{REGION}:333333333333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    with calls.phase("preflight"):
        report = preflight(world.spec(kms_key_arn=elsewhere), clients=clients)
    assert failed(report)["request_valid"] == "account_mismatch"
    assert "secretsmanager:DescribeSecret" not in calls.phases["preflight"]


def test_a_role_name_in_use_by_someone_else_is_taken(world, spec, clients):
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    world.admin(DATALAKE_ID, "iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
    assert failed(preflight(spec, clients=clients)) == {"role_name_available": "role_name_taken"}


def test_an_endpoint_identifier_in_use_by_someone_else_is_taken(world, spec, clients):
    world.admin(DATALAKE_ID, "dms").create_endpoint(
        EndpointIdentifier=ENDPOINT_ID, EndpointType="source", EngineName="postgres", DatabaseName="x"
    )
    assert failed(preflight(spec, clients=clients)) == {"endpoint_identifier_available": "endpoint_identifier_taken"}


def test_the_grants_own_role_and_endpoint_do_not_block_a_second_preflight(world, spec, clients):
    for _name, step in GRANT_STEPS[:4]:
        step(spec, clients=clients)
    report = preflight(spec, clients=clients)
    assert report.ok, report.to_dict()


def test_a_secret_policy_that_would_outgrow_the_limit_is_reported(world, spec, clients):
    padding = {
        "Sid": "Padding",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
        "Action": "secretsmanager:DescribeSecret",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/team": "x" * 20200}},
    }
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn, ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [padding]})
    )
    assert failed(preflight(spec, clients=clients)) == {"policy_sizes": "policy_too_large"}


def test_a_missing_secret_is_reported(world, clients):
    missing = f"arn:aws:secretsmanager:{REGION}:{REMOTE_ID}:secret:prod/missing-AbCdEf"
    report = preflight(world.spec(secret_arn=missing, kms_key_arn=None), clients=clients)
    assert failed(report) == {"secret_exists": "secret_not_found"}


def test_a_secret_in_another_account_is_refused_before_asking_aws(world, clients, calls):
    elsewhere = f"arn:aws:secretsmanager:{REGION}:333333333333:secret:prod/x-AbCdEf"
    with calls.phase("preflight"):
        report = preflight(world.spec(secret_arn=elsewhere, kms_key_arn=None), clients=clients)
    assert failed(report)["request_valid"] == "account_mismatch"
    assert "secretsmanager:DescribeSecret" not in calls.phases["preflight"]


def test_a_provisioner_that_may_not_describe_the_secret_is_told_so(world, spec, clients):
    inject_error(
        world.base_session,
        "DescribeSecret",
        "AccessDeniedException",
        "User: arn:aws:sts::222222222222:assumed-role/dms-access-portal-provisioner/portal-req-1042 is not "
        "authorized to perform: secretsmanager:DescribeSecret on resource: " + spec.secret_arn,
    )
    report = preflight(spec, clients=clients)
    assert report.diagnosis == "provisioner_access_denied"
    assert "secretsmanager:DescribeSecret" in next(c.message for c in report.checks if c.name == "secret_exists")
    assert report.aws_request_ids


def test_a_provisioner_role_the_portal_cannot_assume_is_reported(world, spec, clients):
    inject_error(
        world.base_session,
        "AssumeRole",
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/portal is not authorized to perform: sts:AssumeRole on resource: "
        + spec.remote.provisioner_role_arn,
        status=403,
    )
    report = preflight(spec, clients=clients)
    assert failed(report) == {"provisioner_roles": "provisioner_access_denied"}
    assert "sts:AssumeRole" in report.checks[-1].message


def test_an_invalid_request_is_reported_without_calling_aws(world, clients, calls):
    with calls.phase("preflight"):
        report = preflight(world.spec(role_name="no spaces allowed"), clients=clients)
    assert failed(report) == {"request_valid": "invalid_input"}
    assert calls.total("preflight") == 0


def test_throttling_raises_so_the_caller_retries(world, spec, clients):
    inject_error(world.base_session, "GetRole", "Throttling", "Rate exceeded", status=400)
    with pytest.raises(RetryableAwsError):
        preflight(spec, clients=clients)


def test_the_shape_check_keeps_only_key_names(world, spec, clients, caplog):
    caplog.set_level(logging.DEBUG, logger="provisioning")
    report = preflight(spec, clients=clients, shape_check=True)
    assert report.ok
    assert report.secret_keys == sorted(SECRET_VALUE)
    text = json.dumps(report.to_dict()) + caplog.text
    for value in SECRET_VALUE.values():
        assert str(value) not in text


@pytest.mark.parametrize(
    ("value", "missing"),
    [
        ({"username": "u", "password": "p", "host": "h"}, "port"),
        ({"Username": "u", "Password": "p", "Host": "h", "Port": 1}, "username"),
        ("user=u;password=hunter2", None),
        (json.dumps(["username", "password"]), None),
    ],
)
def test_a_secret_dms_cannot_read_is_reported_without_its_values(world, clients, value, missing):
    arn = new_secret(world, "prod/odd-shape", value, KmsKeyId=world.key_arn)
    report = preflight(world.spec(secret_arn=arn), clients=clients, shape_check=True)
    assert failed(report) == {"secret_shape": "secret_shape_invalid"}
    message = next(c.message for c in report.checks if c.name == "secret_shape")
    if missing:
        assert missing in message
    assert "hunter2" not in json.dumps(report.to_dict())
    assert report.secret_keys is None


def test_oracle_asm_keys_must_come_as_a_set(world, clients):
    value = {**SECRET_VALUE, "asm_user": "asm", "asm_password": "x"}
    arn = new_secret(world, "prod/oracle", value, KmsKeyId=world.key_arn)
    report = preflight(world.spec(secret_arn=arn, engine="oracle"), clients=clients, shape_check=True)
    assert failed(report) == {"secret_shape": "secret_shape_invalid"}
    assert "asm_server" in next(c.message for c in report.checks if c.name == "secret_shape")


APPLY_TIME_CHECKS = ["request_valid", "provisioner_roles", "secret_exists", "customer_managed_key", "key_usable"]


def test_the_apply_time_preflight_reads_only_what_no_writing_step_reads(world, clients, calls):
    spec = world.spec(kms_key_arn=None)  # as the worker runs it: the secret's key as it is now
    with calls.phase("preflight"):
        report = preflight(spec, clients=clients, at_apply=True)
    assert report.ok, report.to_dict()
    assert report.kms_key_arn == world.key_arn
    assert [check.name for check in report.checks] == APPLY_TIME_CHECKS
    assert dict(calls.phases["preflight"]) == {
        "sts:AssumeRole": 2,
        "secretsmanager:DescribeSecret": 1,
        "kms:DescribeKey": 1,
    }
    assert len(report.aws_request_ids) == 2


def test_the_apply_time_preflight_still_checks_a_named_key_and_the_secrets_shape(world, clients):
    report = preflight(world.spec(kms_key_arn=world.key_alias_arn), clients=clients, at_apply=True, shape_check=True)
    assert report.ok
    assert [check.name for check in report.checks] == [*APPLY_TIME_CHECKS, "key_matches", "secret_shape"]
    assert report.secret_keys == sorted(SECRET_VALUE)


def _foreign_role(world):
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    world.admin(DATALAKE_ID, "iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))


def _foreign_endpoint(world):
    world.admin(DATALAKE_ID, "dms").create_endpoint(
        EndpointIdentifier=ENDPOINT_ID, EndpointType="source", EngineName="postgres", DatabaseName="x"
    )


def _oversize_secret_policy(world):
    padding = {
        "Sid": "Padding",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
        "Action": "secretsmanager:DescribeSecret",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/team": "x" * 20200}},
    }
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn, ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [padding]})
    )


def _oversize_key_policy(world):
    policy = world.key_policy()
    policy["Statement"].append(
        {
            "Sid": "Padding",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{REMOTE_ID}:role/backup"},
            "Action": "kms:Encrypt",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalTag/team": "x" * 32400}},
        }
    )
    world.admin(REMOTE_ID, "kms").put_key_policy(KeyId=world.key_arn, PolicyName="default", Policy=json.dumps(policy))


@pytest.mark.parametrize(
    ("arrange", "check", "step_name", "diagnosis"),
    [
        (_foreign_role, "role_name_available", "create_role", "role_name_taken"),
        (_foreign_endpoint, "endpoint_identifier_available", "create_endpoint", "endpoint_identifier_taken"),
        (_oversize_secret_policy, "policy_sizes", "grant_secret_policy", "policy_too_large"),
        (_oversize_key_policy, "policy_sizes", "grant_key_policy", "policy_too_large"),
    ],
)
def test_what_the_apply_time_preflight_leaves_out_the_writing_step_refuses_before_writing(
    world, spec, clients, calls, arrange, check, step_name, diagnosis
):
    arrange(world)
    assert failed(preflight(spec, clients=clients)) == {check: diagnosis}  # at submission
    assert preflight(spec, clients=clients, at_apply=True).ok
    step = dict(GRANT_STEPS)[step_name]
    with calls.phase("step"), pytest.raises(PermanentAwsError) as caught:
        step(spec, clients=clients)
    assert caught.value.diagnosis == diagnosis
    assert calls.writes("step") == {}


def _meet_at(session, operations: set[str], barrier: threading.Barrier) -> None:
    """Hold each of ``operations`` until all of them are in flight (a barrier with a timeout
    fails a run that makes them one after another)."""

    def wait(model, **_):
        if model.name in operations:
            barrier.wait(timeout=5)

    session.events.register("before-call", wait)


def test_preflights_independent_reads_are_in_flight_at_once(world, spec, clients):
    reads = {"DescribeSecret", "GetRole", "DescribeEndpoints"}
    _meet_at(world.base_session, reads, threading.Barrier(len(reads)))
    assert preflight(spec, clients=clients).ok


def test_both_provisioner_roles_are_assumed_at_once(world, spec, clients):
    _meet_at(world.base_session, {"AssumeRole"}, threading.Barrier(2))
    assert preflight(spec, clients=clients, at_apply=True).ok


def test_a_retryable_error_is_the_first_in_check_order_and_carries_every_request_id(world, spec, clients):
    inject_error(world.base_session, "DescribeEndpoints", "ThrottlingException", "Rate exceeded", status=400)
    inject_error(world.base_session, "GetRole", "Throttling", "Rate exceeded", status=400)
    with pytest.raises(RetryableAwsError) as caught:
        preflight(spec, clients=clients)
    assert "iam:GetRole" in str(caught.value)
    assert len(caught.value.aws_request_ids) >= 2


def test_a_failed_check_does_not_hide_a_retryable_error_of_a_later_one(world, spec, clients):
    missing = f"arn:aws:secretsmanager:{REGION}:{REMOTE_ID}:secret:prod/missing-AbCdEf"
    inject_error(world.base_session, "GetRole", "Throttling", "Rate exceeded", status=400)
    with pytest.raises(RetryableAwsError):
        preflight(world.spec(secret_arn=missing, kms_key_arn=None), clients=clients)
