"""Preflight: what an approver is told before anything changes in AWS."""
from __future__ import annotations

import json
import logging

import pytest

from provisioning.clients import GrantClients
from provisioning.errors import RetryableAwsError
from provisioning.preflight import preflight
from provisioning.spec import OWNER_TAG_KEY
from provisioning.steps import GRANT_STEPS
from tests.provisioning.aws_calls import inject_error, inject_response
from tests.provisioning.conftest import DATALAKE_ID, ENDPOINT_ID, REGION, REMOTE_ID, ROLE_NAME, SECRET_VALUE


def failed(report) -> dict[str, str]:
    return {check.name: check.diagnosis for check in report.checks if not check.ok}


def new_secret(world, name, value, **kwargs) -> str:
    secret_string = value if isinstance(value, str) else json.dumps(value)
    return world.admin(REMOTE_ID, "secretsmanager").create_secret(Name=name, SecretString=secret_string,
                                                                   **kwargs)["ARN"]


def test_the_runbooks_request_passes_every_check_without_writing(world, spec, clients, calls):
    with calls.phase("preflight"):
        report = preflight(spec, clients=clients)
    assert report.ok, report.to_dict()
    assert report.diagnosis is None
    assert report.kms_key_arn == world.key_arn
    assert [c.name for c in report.checks] == [
        "secret_location", "secret_exists", "customer_managed_key", "key_usable", "key_matches",
        "role_name_available", "endpoint_identifier_available", "policy_sizes"]
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


def test_a_role_name_in_use_by_someone_else_is_taken(world, spec, clients):
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    world.admin(DATALAKE_ID, "iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
    assert failed(preflight(spec, clients=clients)) == {"role_name_available": "role_name_taken"}


def test_an_endpoint_identifier_in_use_by_someone_else_is_taken(world, spec, clients):
    world.admin(DATALAKE_ID, "dms").create_endpoint(EndpointIdentifier=ENDPOINT_ID, EndpointType="source",
                                                    EngineName="postgres", DatabaseName="x")
    assert failed(preflight(spec, clients=clients)) == {"endpoint_identifier_available": "endpoint_identifier_taken"}


def test_the_grants_own_role_and_endpoint_do_not_block_a_second_preflight(world, spec, clients):
    for name, step in GRANT_STEPS[:4]:
        step(spec, clients=clients)
    report = preflight(spec, clients=clients)
    assert report.ok, report.to_dict()


def test_a_secret_policy_that_would_outgrow_the_limit_is_reported(world, spec, clients):
    padding = {"Sid": "Padding", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
               "Action": "secretsmanager:DescribeSecret", "Resource": "*",
               "Condition": {"StringEquals": {"aws:PrincipalTag/team": "x" * 20200}}}
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn, ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [padding]}))
    assert failed(preflight(spec, clients=clients)) == {"policy_sizes": "policy_too_large"}


def test_a_missing_secret_is_reported(world, clients):
    missing = f"arn:aws:secretsmanager:{REGION}:{REMOTE_ID}:secret:prod/missing-AbCdEf"
    report = preflight(world.spec(secret_arn=missing, kms_key_arn=None), clients=clients)
    assert failed(report) == {"secret_exists": "secret_not_found"}


def test_a_secret_in_another_account_is_refused_before_asking_aws(world, clients, calls):
    elsewhere = f"arn:aws:secretsmanager:{REGION}:333333333333:secret:prod/x-AbCdEf"
    with calls.phase("preflight"):
        report = preflight(world.spec(secret_arn=elsewhere, kms_key_arn=None), clients=clients)
    assert failed(report)["secret_location"] == "account_mismatch"
    assert "secretsmanager:DescribeSecret" not in calls.phases["preflight"]


def test_a_provisioner_that_may_not_describe_the_secret_is_told_so(world, spec, clients):
    inject_error(world.base_session, "DescribeSecret", "AccessDeniedException",
                 "User: arn:aws:sts::222222222222:assumed-role/dms-access-portal-provisioner/portal-req-1042 is not "
                 "authorized to perform: secretsmanager:DescribeSecret on resource: " + spec.secret_arn)
    report = preflight(spec, clients=clients)
    assert report.diagnosis == "provisioner_access_denied"
    assert "secretsmanager:DescribeSecret" in report.checks[1].message
    assert report.aws_request_ids


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
    [({"username": "u", "password": "p", "host": "h"}, "port"),
     ({"Username": "u", "Password": "p", "Host": "h", "Port": 1}, "username"),
     ("user=u;password=hunter2", None),
     (json.dumps(["username", "password"]), None)],
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

