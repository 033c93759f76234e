"""ARN parsing: every grant input ARN is either understood exactly or refused with its rule."""
import pytest

from provisioning.arns import (
    parse_arn,
    parse_kms_key_arn,
    parse_replication_instance_arn,
    parse_role_arn,
    parse_secret_arn,
    role_name_of,
)
from provisioning.errors import InvalidInput

SECRET = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"
KEY = "arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"
ROLE = "arn:aws:iam::111111111111:role/dms-cross-account-secret-access"
REP = "arn:aws:dms:eu-west-1:111111111111:rep:my-instance-1"
CYRILLIC_A = "\u0430"


def test_secret_arn_parts():
    arn = parse_secret_arn(SECRET)
    assert (arn.partition, arn.service, arn.region, arn.account) == ("aws", "secretsmanager", "eu-west-1", "222222222222")
    assert arn.resource_type == "secret"
    assert arn.resource_id == "prod/source-db/credentials-aB3xYz"
    assert arn.raw == SECRET


def test_key_arn_parts_and_alias():
    arn = parse_kms_key_arn(KEY)
    assert (arn.resource_type, arn.resource_id) == ("key", "8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b")
    alias = parse_kms_key_arn("arn:aws:kms:eu-west-1:222222222222:alias/source-db")
    assert (alias.resource_type, alias.resource_id) == ("alias", "source-db")


def test_role_arn_with_path_keeps_path_and_name():
    arn = parse_role_arn("arn:aws:iam::111111111111:role/service-role/dms/my-role", field="role_arn")
    assert arn.region == ""
    assert arn.resource_id == "service-role/dms/my-role"
    assert role_name_of(arn) == "my-role"


def test_replication_instance_arn():
    arn = parse_replication_instance_arn(REP)
    assert (arn.resource_type, arn.resource_id) == ("rep", "my-instance-1")


@pytest.mark.parametrize(
    "value",
    [
        SECRET,
        "arn:aws-cn:secretsmanager:cn-north-1:222222222222:secret:db-ABCdef",
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:222222222222:secret:a.b@c+d=e_f-123456",
    ],
)
def test_valid_secret_arns(value):
    assert parse_secret_arn(value).raw == value


@pytest.mark.parametrize(
    "value",
    [
        KEY,
        "arn:aws:kms:us-east-1:222222222222:key/mrk-1234567890abcdef1234567890abcdef",
        "arn:aws:kms:eu-west-1:222222222222:alias/team/source_db-key",
    ],
)
def test_valid_key_arns(value):
    assert parse_kms_key_arn(value).raw == value


# (value, words that must appear in the rule)
BAD_SECRETS = [
    ("arn:aws-foo:secretsmanager:eu-west-1:222222222222:secret:x-aB3xYz", "partition"),
    ("arn:aws:kms:eu-west-1:222222222222:secret:x-aB3xYz", "service is 'kms'"),
    ("arn:aws:secretsmanager:eu-west-1:22222222222:secret:x-aB3xYz", "12-digit"),
    ("arn:aws:secretsmanager:eu-west-1:2222222222222:secret:x-aB3xYz", "12-digit"),
    ("arn:aws:secretsmanager:eu-west:222222222222:secret:x-aB3xYz", "region"),
    ("arn:aws:secretsmanager:EU-WEST-1:222222222222:secret:x-aB3xYz", "region"),
    ("arn:aws:secretsmanager::222222222222:secret:x-aB3xYz", "region is missing"),
    ("arn:aws:secretsmanager:cn-north-1:222222222222:secret:x-aB3xYz", "partition aws-cn"),
    ("arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials", "6 random characters"),
    ("arn:aws:secretsmanager:eu-west-1:222222222222:secret:x-aB3x", "6 random characters"),
    ("arn:aws:secretsmanager:eu-west-1:222222222222:key:x-aB3xYz", "secret ARN"),
    ("arn:aws:secretsmanager:eu-west-1:222222222222:secret:bad name-aB3xYz", "spaces"),
    ("arn:aws:secretsmanager:eu-west-1:222222222222:secret:bad#name-aB3xYz", "letters, digits"),
    (SECRET + " ", "spaces"),
    (" " + SECRET, "spaces"),
    (SECRET + "\n", "spaces"),
    (SECRET.replace("aB3xYz", f"{CYRILLIC_A}B3xYz"), "ASCII"),
    (SECRET.replace("222222222222", "２22222222222"), "ASCII"),
    ("prod/source-db/credentials", "ARN"),
    ("", "empty"),
    ("arn:aws:secretsmanager:eu-west-1:222222222222", "ARN"),
]


@pytest.mark.parametrize("value, words", BAD_SECRETS)
def test_bad_secret_arns_are_refused_with_field_and_rule(value, words):
    with pytest.raises(InvalidInput) as caught:
        parse_secret_arn(value)
    assert caught.value.field == "secret_arn"
    assert words in caught.value.rule
    assert str(caught.value).startswith("secret_arn: ")
    assert caught.value.diagnosis == "invalid_input"


BAD_KEYS = [
    ("arn:aws:kms:eu-west-1:222222222222:key/8D4F2A1C-7B6E-4F3D-9C2A-1E5B7D8F9A0B", "lower-case UUID"),
    ("arn:aws:kms:eu-west-1:222222222222:key/not-a-uuid", "lower-case UUID"),
    ("arn:aws:kms:eu-west-1:222222222222:alias/", "alias name"),
    ("arn:aws:kms:eu-west-1:222222222222:secret/x", "KMS key ARN"),
    ("arn:aws:secretsmanager:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b", "service"),
    ("arn:aws:kms:eu-west-1:2222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b", "12-digit"),
    ("arn:aws:kms:eu-west-1::key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b", "account id is missing"),
    ("8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b", "ARN"),
    (KEY.replace("a0b", f"{CYRILLIC_A}0b"), "U+0430"),
]


@pytest.mark.parametrize("value, words", BAD_KEYS)
def test_bad_key_arns_are_refused(value, words):
    with pytest.raises(InvalidInput) as caught:
        parse_kms_key_arn(value)
    assert caught.value.field == "kms_key_arn"
    assert words in caught.value.rule


BAD_ROLES = [
    ("arn:aws:iam::111111111111:role/" + "r" * 65, "at most 64"),
    ("arn:aws:iam::111111111111:role/", "must not be empty"),
    ("arn:aws:iam::111111111111:role/has space", "spaces"),
    ("arn:aws:iam::111111111111:role/bad#name", "_+=,.@-"),
    (f"arn:aws:iam::111111111111:role/dms-r{CYRILLIC_A}le", "ASCII"),
    ("arn:aws:iam::111111111111:user/bob", "IAM role ARN"),
    ("arn:aws:iam:eu-west-1:111111111111:role/x", "no region"),
    ("arn:aws:sts::111111111111:role/x", "service"),
    ("arn:aws:iam::11111111111:role/x", "12-digit"),
    ("arn:aws:iam::111111111111:root", "IAM role ARN"),
]


@pytest.mark.parametrize("value, words", BAD_ROLES)
def test_bad_role_arns_are_refused(value, words):
    with pytest.raises(InvalidInput) as caught:
        parse_role_arn(value, field="provisioner_role_arn")
    assert caught.value.field == "provisioner_role_arn"
    assert words in caught.value.rule


def test_role_arn_at_64_chars_is_accepted():
    assert role_name_of(parse_role_arn("arn:aws:iam::111111111111:role/" + "r" * 64, field="f")) == "r" * 64


BAD_REPS = [
    ("arn:aws:dms:eu-west-1:111111111111:endpoint:abc", "replication instance ARN"),
    ("arn:aws:dms:eu-west-1:111111111111:rep:bad--id", "single hyphens"),
    ("arn:aws:dms:eu-west-1:111111111111:rep:trailing-", "single hyphens"),
    ("arn:aws:dms:eu-west-1:111111111111:rep:", "single hyphens"),
    ("arn:aws:rds:eu-west-1:111111111111:rep:abc", "service"),
    ("arn:aws:dms:eu-west-1:1111111111111:rep:abc", "12-digit"),
]


@pytest.mark.parametrize("value, words", BAD_REPS)
def test_bad_replication_instance_arns_are_refused(value, words):
    with pytest.raises(InvalidInput) as caught:
        parse_replication_instance_arn(value)
    assert caught.value.field == "replication_instance_arn"
    assert words in caught.value.rule


@pytest.mark.parametrize("value", [None, 42, b"arn:aws:iam::111111111111:role/x"])
def test_non_strings_are_refused(value):
    with pytest.raises(InvalidInput) as caught:
        parse_arn(value, field="some_arn")
    assert caught.value.field == "some_arn"
    assert "must be a string" in caught.value.rule
