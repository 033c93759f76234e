"""Permission before anything else, on every write route.

For each POST of the authorization table (tests/security/actions.py), every
signed-in person who may not do it sends a body that is invalid in every
field: the answer is the clean refusal (404 for what they may not see, 403
for what they may not do), never the body's field errors, and the portal
makes no AWS call on their behalf (no preflight, no registry read through a
provisioner role). Every AWS call any client makes is counted at botocore's
single entry point; the last test shows the counter does see a filing.
"""
from __future__ import annotations

from collections import Counter

import pytest
from botocore.client import BaseClient
from django.db import transaction
from django.test import Client

from requests_app.models import AccessRequest, AuditEvent, AwsAccount
from tests.security.actions import FILE_BODY, SIGNED_IN, TABLE, VIEWERS, Action, the_request

pytestmark = pytest.mark.django_db

WRITES = [action for action in TABLE if action.method != "GET"]
FILING = {"web:request_new", "web:request_validate", "api:requests", "api:request-sets"}
# Someone listed as requester of another DataLake account may file (for that account) and
# check a form; what they send is then validated, and refused field by field.
MAY_FILE = {"other_requester"}

# Wrong in every field any write route reads.
INVALID_JSON = {
    "plan_hash": {"not": "a hash"},
    "comment": ["not", "text"],
    "expires_at": "not a date",
    "justification": ["x"],
    "datalake_account": ["x"],
    "secret_arn": {"no": 1},
    "kms_key_arn": 7,
    "engine": ["mysql"],
    "endpoint_identifier": {"x": 1},
    "endpoint_type": ["source"],
    "account_id": ["x"],
    "name": {"x": 1},
    "provisioner_role_arn": [],
    "approvers": "nobody",
    "required_approvals": "many",
}
INVALID_FORM = {
    "plan_hash": "",
    "comment": "x" * 100_000,
    "expires_at": "not a date",
    "datalake_account": "999999999999",
    "secret_arn": "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/other",
    "kms_key_arn": "not an arn",
    "engine": "no-such-engine",
    "endpoint_identifier": "--bad--",
    "endpoint_type": "sideways",
}


class Rollback(Exception):
    pass


@pytest.fixture
def aws_calls(monkeypatch, fake_aws) -> Counter:
    """Every AWS API call made by any boto3 client, as ``service:Operation``."""
    calls: Counter = Counter()
    original = BaseClient._make_api_call

    def counted(self, operation_name, api_params):
        calls[f"{self.meta.service_model.service_name}:{operation_name}"] += 1
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counted)
    return calls


def _refusals(action: Action) -> dict[str, int]:
    """The signed-in roles that may not, with the status each must get."""
    refused = {}
    for role in sorted(SIGNED_IN - action.allowed - action.asks):
        if action.route in FILING and role in MAY_FILE:
            continue
        if action.about_the_request and role not in VIEWERS:
            refused[role] = 404
        elif not action.about_the_request and action.refused_as.get(role, action.refused) in (403, 404):
            refused[role] = action.refused_as.get(role, action.refused)
        elif action.refused_as.get(role, action.refused) in (403, 404):
            refused[role] = 403
        # Otherwise the row is refused by the request's state (a repair with no
        # drift): those who see it are entitled, and their body is read first.
    return refused


def _rows(action: Action, request: AccessRequest) -> tuple:
    request.refresh_from_db()
    return (
        request.state,
        AccessRequest.objects.count(),
        AwsAccount.objects.count(),
        AuditEvent.objects.count(),
        request.decisions.count(),
    )


# Open to everyone signed in (making one's own API token): nobody to refuse.
REFUSING = [action for action in WRITES if _refusals(action)]


@pytest.mark.parametrize("action", REFUSING, ids=[f"{a.route.split(':')[0]}-{a.name}" for a in REFUSING])
def test_who_may_not_is_refused_before_the_body_is_read_and_no_aws_call_is_made(action, people, site, aws_calls):
    the_one = the_request(action, people, site)
    refusals = _refusals(action)
    path = action.path_for(the_one)
    aws_calls.clear()
    wrong = {}
    for role, expected in refusals.items():
        client = Client()
        client.force_login(people[role])
        before = _rows(action, the_one)
        try:
            with transaction.atomic():
                if action.route.startswith("api:"):
                    send = getattr(client, action.method.lower())
                    response = send(path, INVALID_JSON, content_type="application/json")
                else:
                    # The inline check answers for the field htmx names.
                    response = client.post(path, INVALID_FORM, HTTP_HX_TRIGGER_NAME="secret_arn")
                after = _rows(action, the_one)
                raise Rollback
        except Rollback:
            pass
        calls = sum(aws_calls.values())
        if response.status_code != expected or calls or after != before:
            wrong[role] = f"{response.status_code} (expected {expected}), {calls} AWS calls, rows {before} -> {after}"
        aws_calls.clear()
    assert wrong == {}


def test_the_counter_sees_the_aws_calls_of_an_allowed_filing(people, site, aws_calls):
    client = Client()
    client.force_login(people["requester"])

    response = client.post("/api/v1/requests/", FILE_BODY, content_type="application/json")

    assert response.status_code == 201, response.content
    assert aws_calls["sts:AssumeRole"] >= 1 and sum(aws_calls.values()) > 1
