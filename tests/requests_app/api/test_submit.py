"""POST /api/v1/requests/: filing, field validation, idempotency."""
from __future__ import annotations

import pytest

from requests_app.models import AccessRequest, AuditEvent
from tests.aws_world import DATALAKE_ID, REGION, REMOTE_ID

URL = "/api/v1/requests/"


def test_a_requester_files_and_gets_the_plan_hash_and_preflight(portal, client_for, submit_body):
    response = client_for("riley").post(URL, submit_body, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Location"] == f"/api/v1/requests/{body['id']}/"
    assert body["state"] == "pending_approval"
    assert body["requester"] == "riley"
    assert body["datalake_account"] == DATALAKE_ID
    assert body["remote_account"] == REMOTE_ID
    assert body["region"] == REGION
    assert len(body["plan_hash"]) == 64
    assert body["preflight_status"] == "passed"
    assert body["preflight"]["ok"] is True
    # The key found from the secret is the Remote account's: the requester learns it once approved.
    assert body["resolved_kms_key_arn"] == ""
    assert AccessRequest.objects.get(pk=body["id"]).resolved_kms_key_arn == portal.key_arn
    assert body["role_name"]  # derived from the endpoint identifier
    assert body["allowed_actions"] == ["cancel"]
    assert body["diagnosis_detail"] is None
    assert "binlog_format=ROW" in body["cdc_checklist"]
    assert AuditEvent.objects.filter(action="request.submitted", request_id=body["id"], source_ip="127.0.0.1").exists()


def test_a_secret_under_the_aws_managed_key_is_filed_with_its_diagnosis(portal, client_for, submit_body):
    submit_body["secret_arn"] = portal.managed_secret_arn

    response = client_for("riley").post(URL, submit_body, format="json")

    assert response.status_code == 201
    assert response.json()["preflight_status"] == "failed"
    assert response.json()["diagnosis"] == "aws_managed_key"
    # The code comes with what to do about it.
    assert "customer managed" in response.json()["diagnosis_detail"]["remediation"]
    assert "approve" not in response.json()["allowed_actions"]


def test_someone_not_listed_as_requester_may_not_file(portal, client_for, submit_body):
    response = client_for("avery").post(URL, submit_body, format="json")

    assert response.status_code == 403
    assert not AccessRequest.objects.exists()


def test_anonymous_may_not_file(portal, client_for, submit_body):
    assert client_for(None).post(URL, submit_body, format="json").status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("secret_arn", "arn:aws:secretsmanager:eu-west-1:222222222222:prod/source-db"),  # malformed
        ("secret_arn", "arn:aws:secretsmanager:eu-west-1:999999999999:secret:prod/db-AbCdEf"),  # not a Remote
        ("kms_key_arn", "arn:aws:kms:us-east-1:222222222222:key/0b3a2c55-6f1e-4c3d-9a52-1e2f3a4b5c6d"),  # region
        ("endpoint_identifier", "source--db"),
        ("role_name", "r" * 65),
        ("engine", "cobol"),
        ("datalake_account", "222222222222"),  # registered, but not a DataLake account
        ("replication_instance_arn", "arn:aws:dms:eu-west-1:111111111111:endpoint:ABC"),
    ],
)
def test_a_bad_field_is_a_400_naming_that_field(portal, client_for, submit_body, field, value):
    submit_body[field] = value

    response = client_for("riley").post(URL, submit_body, format="json")

    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert list(errors) == [field]
    assert errors[field] and all(message.strip() for message in errors[field])
    assert not AccessRequest.objects.exists()


def test_region_mismatch_between_secret_and_replication_instance(portal, client_for, submit_body):
    submit_body["replication_instance_arn"] = portal.replication_instance_arn.replace(REGION, "us-east-1")

    response = client_for("riley").post(URL, submit_body, format="json")

    assert response.status_code == 400
    assert "eu-west-1" in " ".join(response.json()["errors"]["replication_instance_arn"])


def test_every_missing_required_field_is_named(portal, client_for):
    response = client_for("riley").post(URL, {}, format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {
        "datalake_account",
        "secret_arn",
        "engine",
        "endpoint_identifier",
        "justification",
    }


class TestIdempotencyKey:
    def test_a_retry_with_the_same_key_and_body_returns_the_same_request(self, portal, client_for, submit_body):
        client = client_for("riley")
        first = client.post(URL, submit_body, format="json", HTTP_IDEMPOTENCY_KEY="file-orders-cdc-1")
        again = client.post(URL, submit_body, format="json", HTTP_IDEMPOTENCY_KEY="file-orders-cdc-1")

        assert first.status_code == 201
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert AccessRequest.objects.count() == 1

    def test_the_same_key_with_another_body_is_a_conflict(self, portal, client_for, submit_body):
        client = client_for("riley")
        client.post(URL, submit_body, format="json", HTTP_IDEMPOTENCY_KEY="file-orders-cdc-1")

        other = client.post(
            URL, {**submit_body, "justification": "Something else"}, format="json", HTTP_IDEMPOTENCY_KEY="file-orders-cdc-1"
        )

        assert other.status_code == 409
        assert other.json()["code"] == "idempotency_conflict"
        assert AccessRequest.objects.count() == 1

    def test_without_a_key_a_second_identical_body_is_refused_for_its_names(self, portal, client_for, submit_body):
        client = client_for("riley")
        client.post(URL, submit_body, format="json")

        second = client.post(URL, submit_body, format="json")

        assert second.status_code == 400
        assert "endpoint_identifier" in second.json()["errors"]

    @pytest.mark.parametrize("key", ["k" * 256, " leading-space", "tab\tinside"])
    def test_a_malformed_key_is_a_400(self, portal, client_for, submit_body, key):
        response = client_for("riley").post(URL, submit_body, format="json", HTTP_IDEMPOTENCY_KEY=key)

        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["errors"]
        assert not AccessRequest.objects.exists()
