"""Diagnoses: every code the engine can record has a title and a remediation a person can act on."""
import json

import pytest

from provisioning.diagnoses import DIAGNOSES, cdc_checklist, get_diagnosis
from provisioning.errors import InvalidInput
from provisioning.names import ENGINES

REQUIRED = [
    "aws_managed_key", "secret_policy_denies", "key_policy_denies", "identity_policy_denies",
    "secret_shape_invalid", "principal_not_visible", "role_name_taken", "endpoint_identifier_taken",
    "provisioner_access_denied", "connection_failed", "policy_too_large", "key_not_usable",
    "key_mismatch", "secret_not_found", "region_mismatch", "account_mismatch", "aws_unavailable",
    "invalid_input",
]


@pytest.mark.parametrize("code", REQUIRED)
def test_every_required_code_has_a_title_and_remediation(code):
    diagnosis = DIAGNOSES[code]
    assert diagnosis.code == code
    assert diagnosis.title and diagnosis.remediation
    assert json.loads(json.dumps(diagnosis.to_dict())) == {
        "code": code, "title": diagnosis.title, "remediation": diagnosis.remediation,
    }


def test_remediations_name_what_to_fix():
    assert "customer managed" in DIAGNOSES["aws_managed_key"].remediation
    assert "exact role ARN" in DIAGNOSES["secret_policy_denies"].remediation
    assert "kms:Decrypt" in DIAGNOSES["key_policy_denies"].remediation
    assert "username, password, host and port" in DIAGNOSES["secret_shape_invalid"].remediation


def test_unknown_code_still_gets_something_to_show():
    assert get_diagnosis(None) is None
    assert get_diagnosis("key_policy_denies") is DIAGNOSES["key_policy_denies"]
    unknown = get_diagnosis("something_new")
    assert unknown.code == "something_new" and unknown.remediation


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_engine_has_a_checklist(engine):
    assert cdc_checklist(engine)


def test_mysql_and_postgres_checklists_cover_the_runbook():
    mysql = " ".join(cdc_checklist("mysql"))
    for item in ("binlog_format=ROW", "binlog_row_image=FULL", "REPLICATION SLAVE", "REPLICATION CLIENT"):
        assert item in mysql
    postgres = " ".join(cdc_checklist("postgres"))
    for item in ("wal_level=logical", "rds.logical_replication=1", "replication"):
        assert item in postgres


def test_checklist_is_a_copy():
    cdc_checklist("mysql").clear()
    assert cdc_checklist("mysql")


def test_checklist_for_an_unknown_engine_is_refused():
    with pytest.raises(InvalidInput):
        cdc_checklist("dynamodb")
