"""Names a request chooses: refused early, with the field and the rule, when AWS would refuse them later."""
import pytest

from provisioning.errors import InvalidInput
from provisioning.names import (
    ENGINES,
    derive_role_name,
    validate_account_id,
    validate_endpoint_identifier,
    validate_endpoint_type,
    validate_engine,
    validate_region,
    validate_role_name,
)

CYRILLIC_A = "\u0430"


def test_engine_settings_keys_follow_the_design():
    assert ENGINES == {
        "mysql": "MySQLSettings",
        "mariadb": "MySQLSettings",
        "aurora": "MySQLSettings",
        "postgres": "PostgreSQLSettings",
        "aurora-postgresql": "PostgreSQLSettings",
        "oracle": "OracleSettings",
        "sqlserver": "MicrosoftSQLServerSettings",
        "sybase": "SybaseSettings",
        "db2": "IBMDb2Settings",
        "mongodb": "MongoDbSettings",
        "docdb": "DocDbSettings",
        "redshift": "RedshiftSettings",
    }


@pytest.mark.parametrize("value", ["MySQL", "postgresql", "mysql ", "", "dynamodb", None])
def test_unknown_engines_are_refused(value):
    with pytest.raises(InvalidInput) as caught:
        validate_engine(value)
    assert caught.value.field == "engine"


@pytest.mark.parametrize("value", ["source", "target"])
def test_endpoint_types(value):
    assert validate_endpoint_type(value) == value


@pytest.mark.parametrize("value", ["Source", "both", ""])
def test_bad_endpoint_types(value):
    with pytest.raises(InvalidInput, match="endpoint_type: must be source or target"):
        validate_endpoint_type(value)


@pytest.mark.parametrize("value", ["a", "src-db-1", "A1", "x" * 255, "Prod-Orders-MySQL"])
def test_valid_endpoint_identifiers(value):
    assert validate_endpoint_identifier(value) == value


BAD_IDENTIFIERS = [
    ("", "must not be empty"),
    ("1abc", "start with a letter"),
    ("-abc", "start with a letter"),
    ("abc-", "must not end with a hyphen"),
    ("ab--c", "two hyphens"),
    ("ab_c", "ASCII letters, digits and hyphens"),
    ("ab c", "ASCII letters, digits and hyphens"),
    (f"db-{CYRILLIC_A}", "U+0430"),
    ("x" * 256, "at most 255"),
]


@pytest.mark.parametrize("value, words", BAD_IDENTIFIERS)
def test_bad_endpoint_identifiers(value, words):
    with pytest.raises(InvalidInput) as caught:
        validate_endpoint_identifier(value)
    assert caught.value.field == "endpoint_identifier"
    assert words in caught.value.rule


@pytest.mark.parametrize("value", ["r", "dms-cross-account-secret-access", "a_b+c=d,e.f@g-h", "r" * 64])
def test_valid_role_names(value):
    assert validate_role_name(value) == value


BAD_ROLE_NAMES = [
    ("", "must not be empty"),
    ("r" * 65, "at most 64"),
    ("role name", "_+=,.@-"),
    ("role/name", "_+=,.@-"),
    (f"dms-r{CYRILLIC_A}le", "U+0430"),
    ("rôle", "U+00F4"),
]


@pytest.mark.parametrize("value, words", BAD_ROLE_NAMES)
def test_bad_role_names(value, words):
    with pytest.raises(InvalidInput) as caught:
        validate_role_name(value)
    assert caught.value.field == "role_name"
    assert words in caught.value.rule


def test_derived_role_name_for_a_short_identifier():
    assert derive_role_name("orders-db") == "dms-secret-orders-db"


@pytest.mark.parametrize("length", [53, 54, 60, 255])
def test_derived_role_name_always_fits_and_is_valid(length):
    identifier = ("a" + "b-" * 200)[: length - 1] + "z"
    name = derive_role_name(identifier)
    assert len(name) <= 64
    assert validate_role_name(name) == name
    assert name.startswith("dms-secret-a")


def test_long_identifiers_with_a_common_prefix_get_different_roles():
    first = derive_role_name("x" * 60 + "first")
    second = derive_role_name("x" * 60 + "second")
    assert first != second
    assert len(first) == len(second) == 64


def test_derive_role_name_refuses_a_bad_identifier():
    with pytest.raises(InvalidInput) as caught:
        derive_role_name("bad--id")
    assert caught.value.field == "endpoint_identifier"


@pytest.mark.parametrize("value", ["eu-west-1", "us-east-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1"])
def test_valid_regions(value):
    assert validate_region(value) == value


@pytest.mark.parametrize("value", ["eu-west", "EU-WEST-1", "euwest1", "eu-west-1 ", "", "eu-west-１", "e-west-1"])
def test_bad_regions(value):
    with pytest.raises(InvalidInput) as caught:
        validate_region(value)
    assert caught.value.field == "region"


def test_region_outside_the_partition_is_refused():
    with pytest.raises(InvalidInput, match="belongs to partition aws-cn"):
        validate_region("cn-north-1", partition="aws")
    assert validate_region("us-gov-east-1", partition="aws-us-gov") == "us-gov-east-1"


@pytest.mark.parametrize(
    "value, words",
    [
        ("11111111111", "12-digit"),
        ("1111111111111", "12-digit"),
        ("11111111111a", "12-digit"),
        ("１11111111111", "ASCII"),
        ("111111111111\n", "line breaks"),
        (111111111111, "must be a string"),
    ],
)
def test_bad_account_ids(value, words):
    with pytest.raises(InvalidInput) as caught:
        validate_account_id(value, field="remote_account_id")
    assert caught.value.field == "remote_account_id"
    assert words in caught.value.rule


def test_valid_account_id():
    assert validate_account_id("012345678901") == "012345678901"
