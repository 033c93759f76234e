"""Every documented operation, fed generated valid and invalid input: never a
5xx, and every answer matches the schema it documents.

The caller is sam, staff and also requester and approver of the two accounts,
so generated calls reach the services rather than stopping at a refusal; half
of the generated request ids are swapped for requests that exist (in several
states), so the per-request operations run against real rows too.
"""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from portal.wsgi import application
from requests_app.models import AccessRequest, ApiToken
from tests.factories import api_token_for

DRIFTED = {
    "drifted": True,
    "kinds": ["endpoint_missing"],
    "findings": [{"kind": "endpoint_missing", "resource": "source-db-mysql", "message": "The endpoint is gone.",
                  "expected": None, "actual": None}],
    "role_id": None,
    "aws_request_ids": [],
}


@pytest.fixture
def seeded(portal, accounts, people, client_for, submit_body) -> list[int]:
    accounts["datalake"].requesters.add(people["sam"])
    accounts["remote"].approvers.add(people["sam"])
    riley = client_for("riley")
    ids = []
    for index, secret in enumerate([portal.secret_arn, portal.secret_arn, portal.managed_secret_arn, portal.secret_arn]):
        body = {**submit_body, "secret_arn": secret, "endpoint_identifier": f"fuzzed-db-{index}"}
        response = riley.post("/api/v1/requests/", body, format="json")
        assert response.status_code == 201, response.json()
        ids.append(response.json()["id"])
    seen = client_for("avery").get(f"/api/v1/requests/{ids[1]}/").json()["plan_hash"]
    client_for("avery").post(f"/api/v1/requests/{ids[1]}/approve/", {"plan_hash": seen}, format="json")
    # An active grant that expires and has drifted, so the lifecycle operations reach their services.
    AccessRequest.objects.filter(pk=ids[3]).update(
        state="active", expires_at=timezone.now() + timedelta(days=30), drift=DRIFTED, drift_checked_at=timezone.now()
    )
    return ids


@pytest.fixture
def api_schema(seeded):
    # Called as a WSGI app, Django closes the database connection at the end
    # of each request, which would end the test's transaction; Django's own
    # test client keeps it open the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def sam_token(seeded, people) -> str:
    return api_token_for(people["sam"], name="schemathesis")


schema = schemathesis.pytest.from_fixture("api_schema")
_spares = itertools.count(1)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_no_server_error_and_every_answer_matches_the_schema(case, sam_token, seeded, people):
    identifier = (case.path_parameters or {}).get("id")
    if case.operation.path == "/api/v1/tokens/{id}/":
        # Revoking: half the ids are a spare token of sam's, and never the one the calls are made with.
        in_use = ApiToken.objects.get(user=people["sam"], name="schemathesis").pk
        if isinstance(identifier, int) and (identifier % 2 == 0 or identifier == in_use):
            spare, _ = ApiToken.objects.create(user=people["sam"], name=f"spare-{next(_spares)}", expiry=timedelta(days=1))
            case.path_parameters["id"] = spare.pk
    elif isinstance(identifier, int) and identifier % 2 == 0:
        case.path_parameters["id"] = seeded[identifier % len(seeded)]
    case.call_and_validate(
        headers={"Authorization": f"Token {sam_token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
