"""Every documented operation, fed generated valid and invalid input, as each
role, with every check schemathesis has: never a 5xx, every answer matches the
schema it documents, what the schema forbids is refused and what it allows is
accepted.

Each case is sent as riley (files for the DataLake account), avery (approves
for the Remote account) and sam (staff, and also requester and approver of
the two accounts, so his calls reach the services rather than stopping at a
refusal). Half of the generated request ids are swapped for requests that
exist (in several states), so the per-request operations run against real
rows too.

The schema states the syntax of every field. What it cannot state is whether
a value names something that exists (a registered account, the secret, a
user), agrees with another field (the provisioner role's account, no database
name for MySQL) or lies in the future: in a schema-valid (positive) case those
fields are pointed at real, consistent values before the call, so a refusal
of what is left is a disagreement between the schema and the server.

Runtime: about a minute and a half on the shared machine.
"""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import schemathesis
from django.contrib.auth.models import Group
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from portal.wsgi import application
from provisioning.names import MYSQL_FAMILY, derive_role_name
from requests_app.models import LIVE_STATES, AccessRequest, ApiToken, AwsAccount
from tests.aws_world import DATALAKE_ID
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
    Group.objects.create(name=FUZZ_GROUP)
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
def seeded_sets(seeded, portal, client_for, submit_body) -> list[int]:
    """Two multi-grant requests of riley's: one awaiting approval, one approved."""
    ids = []
    for name in ("a", "b"):
        grants = [
            {"secret_arn": portal.secret_arn, "engine": "mysql", "endpoint_identifier": f"fuzzed-set-{name}-{index}"}
            for index in range(2)
        ]
        body = {"datalake_account": DATALAKE_ID, "justification": submit_body["justification"], "grants": grants}
        response = client_for("riley").post("/api/v1/request-sets/", body, format="json")
        assert response.status_code == 201, response.json()
        ids.append(response.json()["id"])
    seen = client_for("avery").get(f"/api/v1/request-sets/{ids[1]}/").json()["plan_hash"]
    client_for("avery").post(f"/api/v1/request-sets/{ids[1]}/approve/", {"plan_hash": seen}, format="json")
    return ids


@pytest.fixture
def api_schema(seeded, seeded_sets):
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


# Each role the API serves: riley files for the DataLake account, avery
# approves for the Remote account, sam is staff and also requester and
# approver of the two accounts (so his calls reach the services).
ROLES = ["riley", "avery", "sam"]


@pytest.fixture
def role_tokens(seeded, people) -> dict[str, str]:
    return {name: api_token_for(people[name], name="schemathesis") for name in ROLES}


load_all_checks()
# Every check schemathesis has: not only "no 5xx" and "the answer matches its
# schema", but also that what the schema forbids is refused
# (negative_data_rejection) and what it allows is accepted
# (positive_data_acceptance).
ALL_CHECKS = CHECKS.get_all()


schema = schemathesis.pytest.from_fixture("api_schema")
_spares = itertools.count(1)


def _future(days: int) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()


def _unregistered(account_id: str) -> str:
    while AwsAccount.objects.filter(account_id=account_id).exists():
        account_id = f"{(int(account_id) + 1) % 10**12:012d}"
    return account_id


def _free_name(name: str, taken) -> str:
    """``name`` (an endpoint identifier or role name), changed until no live request holds it."""
    number = 0
    while taken(name):
        number += 1
        name = f"{name[:40].rstrip('-')}-n{number}"
    return name


def _name_groups(body: dict, *, is_datalake) -> None:
    # Group names must name a group the portal knows; requester groups only a DataLake account has.
    for field in ("approver_groups", "requester_groups", "escalation_groups"):
        if field in body:
            wanted = body[field] and (field != "requester_groups" or is_datalake)
            body[field] = [FUZZ_GROUP] if wanted else []


FUZZ_GROUP = "fuzz-group"


def _name_what_exists(case, world) -> None:
    """Point a positive case's references at real, consistent values (see the module docstring)."""
    if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return
    body = case.body
    operation = (case.method.upper(), case.path)
    if operation == ("POST", "/api/v1/requests/"):
        body.update(datalake_account=DATALAKE_ID, secret_arn=world.secret_arn, kms_key_arn="",
                    replication_instance_arn="")
        if body.get("expires_at") is not None:
            body["expires_at"] = _future(30)
        if body.get("engine") in MYSQL_FAMILY:
            body["database_name"] = ""
        # Each role files the same case: names a live request holds are taken.
        live = AccessRequest.objects.filter(state__in=LIVE_STATES)
        body["endpoint_identifier"] = _free_name(
            body["endpoint_identifier"], lambda name: live.filter(endpoint_identifier__iexact=name).exists()
        )
        if body.get("role_name"):
            body["role_name"] = _free_name(body["role_name"], lambda name: live.filter(role_name__iexact=name).exists())
    elif operation == ("POST", "/api/v1/request-sets/"):
        body.update(datalake_account=DATALAKE_ID)
        if body.get("expires_at") is not None:
            body["expires_at"] = _future(30)
        live = AccessRequest.objects.filter(state__in=LIVE_STATES)
        endpoints: set[str] = set()
        roles: set[str] = set()
        for grant in body.get("grants") or []:
            if not isinstance(grant, dict):
                continue
            grant.update(secret_arn=world.secret_arn, kms_key_arn="", replication_instance_arn="")
            if grant.get("engine") in MYSQL_FAMILY:
                grant["database_name"] = ""
            # Names no live request holds and no other grant of the set uses (regardless of case).
            grant["endpoint_identifier"] = _free_name(
                grant["endpoint_identifier"],
                lambda name: name.casefold() in endpoints or live.filter(endpoint_identifier__iexact=name).exists(),
            )
            endpoints.add(grant["endpoint_identifier"].casefold())
            role = grant.get("role_name") or derive_role_name(grant["endpoint_identifier"])
            if role.casefold() in roles or live.filter(role_name__iexact=role).exists():
                grant["role_name"] = role = _free_name(
                    role, lambda name: name.casefold() in roles or live.filter(role_name__iexact=name).exists()
                )
            roles.add(role.casefold())
    elif operation == ("POST", "/api/v1/accounts/"):
        body["account_id"] = _unregistered(body["account_id"])
        body["provisioner_role_arn"] = f"arn:aws:iam::{body['account_id']}:role/provisioner"
        if not (body.get("is_datalake") or body.get("is_remote")):
            body["is_datalake"] = True
        if body.get("is_remote") and body.get("external_id_required", True) and not body.get("external_id"):
            body["external_id"] = "fuzz-external-id"  # a Remote account needs one unless told otherwise
        body["approvers"] = ["avery"] if body.get("approvers") else []
        body["requesters"] = ["riley"] if body.get("requesters") and body.get("is_datalake") else []
        if body["approvers"]:
            body["required_approvals"] = 1
        _name_groups(body, is_datalake=body.get("is_datalake"))
    elif operation == ("PATCH", "/api/v1/accounts/{account_id}/"):
        account = AwsAccount.objects.filter(account_id=(case.path_parameters or {}).get("account_id")).first()
        is_datalake = account is not None and account.is_datalake
        for field, names in (("approvers", ["avery", "sam"]), ("escalation_users", ["avery"])):
            if field in body:
                body[field] = names if body[field] else []
        if "requesters" in body:
            body["requesters"] = ["riley", "sam"] if body["requesters"] and is_datalake else []
        if "required_approvals" in body:
            body["required_approvals"] = 1
        _name_groups(body, is_datalake=is_datalake)
        if body.get("escalate_after_hours") and not (body.get("escalation_users") or body.get("escalation_groups")):
            body["escalation_users"] = ["avery"]
    elif operation == ("POST", "/api/v1/requests/{id}/extend/"):
        body["expires_at"] = _future(60)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_every_check_passes_as_each_role(case, role_tokens, seeded, seeded_sets, portal, people):
    identifier = (case.path_parameters or {}).get("id")
    # Only a case meant to be valid gets a real id: a negative case's id is the point of it.
    positive = case.meta is None or case.meta.generation.mode.is_positive
    if positive and case.operation.path == "/api/v1/tokens/{id}/":
        # Revoking: half the ids are a spare token of sam's, and never one the calls are made with.
        in_use = set(ApiToken.objects.filter(name="schemathesis").values_list("pk", flat=True))
        if isinstance(identifier, int) and (identifier % 2 == 0 or identifier in in_use):
            spare, _ = ApiToken.objects.create(user=people["sam"], name=f"spare-{next(_spares)}", expiry=timedelta(days=1))
            case.path_parameters["id"] = spare.pk
    elif positive and isinstance(identifier, int) and identifier % 2 == 0 and case.operation.path.startswith(
        "/api/v1/request-sets/"
    ):
        case.path_parameters["id"] = seeded_sets[identifier % len(seeded_sets)]
    elif positive and isinstance(identifier, int) and identifier % 2 == 0:
        case.path_parameters["id"] = seeded[identifier % len(seeded)]
    for token in role_tokens.values():
        _name_what_exists(case, portal)
        case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=ALL_CHECKS)
