"""Filing: every field is checked before anything reaches AWS, and only listed requesters file."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from requests_app.errors import NotAllowed, ValidationFailed
from requests_app.models import AccessRequest, AuditEvent
from requests_app.services import access_request_submit
from requests_app.validation import validate_request_input
from tests.factories import DataLakeAccountFactory, RemoteAccountFactory, StaffFactory

SECRET = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"
KEY = "arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"
REPLICATION = "arn:aws:dms:eu-west-1:111111111111:rep:datalake-replication"


def body(**overrides):
    fields = {
        "datalake_account_id": "111111111111",
        "secret_arn": SECRET,
        "engine": "mysql",
        "endpoint_identifier": "source-db-mysql",
        "justification": "Replicate orders into the lake.",
    }
    return {**fields, **overrides}


BAD_FIELDS = [
    ({"datalake_account_id": "11111111111"}, "datalake_account", "12"),
    ({"datalake_account_id": "999999999999"}, "datalake_account", "No account 999999999999"),
    ({"datalake_account_id": "222222222222"}, "datalake_account", "not registered as a DataLake"),
    ({"secret_arn": "prod/source-db/credentials"}, "secret_arn", "Must be an ARN"),
    ({"secret_arn": "arn:aws:ssm:eu-west-1:222222222222:parameter/x"}, "secret_arn", "Secrets Manager secret ARN"),
    ({"secret_arn": SECRET[:-7]}, "secret_arn", "6 random characters"),
    ({"secret_arn": SECRET.replace("222222222222", "333333333333")}, "secret_arn", "333333333333 is not a registered Remote"),
    ({"kms_key_arn": "8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"}, "kms_key_arn", "Must be an ARN"),
    ({"kms_key_arn": "arn:aws:kms:eu-west-1:222222222222:grant/x"}, "kms_key_arn", "KMS key ARN"),
    ({"kms_key_arn": KEY.replace("222222222222", "111111111111")}, "kms_key_arn", "Remote account 222222222222"),
    ({"kms_key_arn": KEY.replace("eu-west-1", "eu-central-1")}, "kms_key_arn", "region eu-west-1"),
    ({"replication_instance_arn": REPLICATION.replace("111111111111", "222222222222")}, "replication_instance_arn", "DataLake account 111111111111"),
    ({"replication_instance_arn": REPLICATION.replace("eu-west-1", "us-east-1")}, "replication_instance_arn", "region eu-west-1"),
    ({"replication_instance_arn": "arn:aws:dms:eu-west-1:111111111111:endpoint:x"}, "replication_instance_arn", "replication instance ARN"),
    ({"endpoint_identifier": "1source"}, "endpoint_identifier", "start with a letter"),
    ({"endpoint_identifier": "source--db"}, "endpoint_identifier", "two hyphens"),
    ({"endpoint_identifier": "source-db-"}, "endpoint_identifier", "end with a hyphen"),
    ({"endpoint_identifier": "source_db"}, "endpoint_identifier", "letters, digits and hyphens"),
    ({"endpoint_identifier": ""}, "endpoint_identifier", "empty"),
    ({"role_name": "r" * 65}, "role_name", "64"),
    ({"role_name": "dms role"}, "role_name", "_+=,.@-"),
    ({"engine": "mysql8"}, "engine", "Must be one of"),
    ({"endpoint_type": "both"}, "endpoint_type", "source or target"),
    ({"database_name": "orders"}, "database_name", "MySQL-family"),
    ({"engine": "postgres", "database_name": "x" * 256}, "database_name", "255"),
    ({"justification": "  "}, "justification", "required"),
    ({"justification": "x" * 4001}, "justification", "4000"),
    ({"expires_at": timezone.now() - timedelta(minutes=1)}, "expires_at", "future"),
]


@pytest.mark.parametrize(("overrides", "field", "words"), BAD_FIELDS)
def test_each_bad_field_is_refused_by_name_before_any_row_or_aws_call(cast, overrides, field, words):
    with pytest.raises(ValidationFailed) as refused:
        access_request_submit(requester=cast.requester, **body(**overrides))
    assert list(refused.value.errors) == [field]
    assert words in " ".join(refused.value.errors[field])
    assert refused.value.status_code == 400
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.exists()


def test_all_broken_fields_are_reported_at_once(cast):
    with pytest.raises(ValidationFailed) as refused:
        validate_request_input(**body(engine="db9", endpoint_identifier="-x", justification=""))
    assert set(refused.value.errors) == {"engine", "endpoint_identifier", "justification"}


def test_clean_input_comes_back_normalised_with_a_derived_role_name(cast):
    cleaned = validate_request_input(
        **body(
            secret_arn=f"  {SECRET} ",
            kms_key_arn=KEY,
            replication_instance_arn=REPLICATION,
            engine="postgres",
            database_name="orders",
            endpoint_type="target",
            expires_at=timezone.now() + timedelta(days=30),
        )
    )
    assert cleaned["datalake_account"] == cast.datalake
    assert cleaned["remote_account"] == cast.remote
    assert cleaned["region"] == "eu-west-1"
    assert cleaned["secret_arn"] == SECRET
    assert cleaned["role_name"] == "dms-secret-source-db-mysql"
    assert (cleaned["endpoint_type"], cleaned["database_name"]) == ("target", "orders")


def test_a_long_identifier_still_gives_a_valid_role_name(cast):
    cleaned = validate_request_input(**body(endpoint_identifier="a" + "-b" * 100))
    assert len(cleaned["role_name"]) <= 64


@pytest.mark.parametrize("who", ["outsider", "approver", "staff"])
def test_only_requesters_listed_by_the_datalake_account_file_for_it(cast, who):
    with pytest.raises(NotAllowed, match="not a requester for DataLake account 111111111111"):
        access_request_submit(requester=getattr(cast, who), **body())
    assert not AccessRequest.objects.exists()


def test_a_requester_of_one_datalake_account_cannot_file_for_another(cast):
    other = DataLakeAccountFactory(account_id="444444444444", requesters=[StaffFactory()])
    with pytest.raises(NotAllowed):
        access_request_submit(requester=cast.requester, **body(datalake_account_id=other.account_id))


def test_a_secret_in_an_account_registered_only_as_datalake_is_refused(cast):
    DataLakeAccountFactory(account_id="555555555555")
    RemoteAccountFactory(account_id="666666666666")
    with pytest.raises(ValidationFailed) as refused:
        access_request_submit(requester=cast.requester, **body(secret_arn=SECRET.replace("222222222222", "555555555555")))
    assert "not a registered Remote account" in refused.value.errors["secret_arn"][0]


def test_an_idempotency_key_longer_than_the_column_is_refused(cast):
    with pytest.raises(ValidationFailed) as refused:
        access_request_submit(requester=cast.requester, idempotency_key="k" * 256, **body())
    assert list(refused.value.errors) == ["idempotency_key"]
