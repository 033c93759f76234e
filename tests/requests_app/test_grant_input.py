"""A new request's fields are declared once (requests_app.grant_input): the API body, the
page's form, the submit service's keywords and the validation are built from that table."""
from __future__ import annotations

import pytest
from django.test import Client

from provisioning.errors import InvalidInput
from requests_app import grant_input, validation
from requests_app.api.submit_serializers import input_serializer
from requests_app.errors import ValidationFailed
from requests_app.grant_input import FIELD_NAMES, GRANT_INPUT, SUBMIT_INPUT, InputField, Kind
from requests_app.models import AccessRequest, AuditEvent
from requests_app.services import access_request_submit
from requests_app.web.forms import AccessRequestForm, input_form
from tests.requests_app.page_rows import SECRET_ARN, make_accounts, make_users

pytestmark = pytest.mark.django_db


def _ticket(value: str, *, field: str) -> str:
    if not value.startswith("CHG-"):
        raise InvalidInput(field, "must be a change ticket like CHG-123")
    return value


# A field as a later change would add it: one row.
TICKET = InputField(
    "change_ticket",
    Kind.TEXT,
    _ticket,
    label="Change ticket",
    help="The change this work belongs to.",
    hint="Optional: the change this work belongs to.",
    per_grant=False,
    max_length=16,
    pattern=r"^CHG-[0-9]+$",
    pattern_message="Must be CHG- and digits.",
)


@pytest.fixture
def site():
    users = make_users()
    return users, make_accounts(users)


def body(**overrides) -> dict:
    return {
        "datalake_account_id": "111111111111", "secret_arn": SECRET_ARN, "engine": "postgres",
        "endpoint_identifier": "orders-source", "justification": "Nightly replication.", **overrides,
    }


def test_the_published_body_and_the_form_have_exactly_the_declared_fields(site):
    users, _ = site
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    reference = schema["paths"]["/api/v1/requests/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    submit = schema["components"]["schemas"][reference["$ref"].rsplit("/", 1)[1]]
    assert list(submit["properties"]) == list(FIELD_NAMES)
    assert set(submit["required"]) == {field.name for field in SUBMIT_INPUT if field.required}
    assert submit["properties"]["expires_at"]["description"] == "When the grant is revoked automatically."

    browser = Client()
    browser.force_login(users["requester"])
    form = browser.get("/requests/new/").context["form"]
    assert list(form.fields) == list(FIELD_NAMES)
    assert form.fields["kms_key_arn"].help_text == "Optional: found from the secret when left empty."
    # The page puts the short fields side by side, in the declared order.
    assert [[field.name for field in row] for row in form.rows()][3:5] == [
        ["engine", "endpoint_type"], ["endpoint_identifier", "database_name"]
    ]


def test_a_grant_names_its_own_fields_and_the_request_the_rest():
    # What a request naming several grants would repeat for each of them.
    assert {field.name for field in SUBMIT_INPUT} - {field.name for field in GRANT_INPUT} == {
        "datalake_account", "justification", "expires_at"
    }


def test_a_declared_field_becomes_an_api_field_with_its_pattern_length_and_default():
    serializer_class = input_serializer("TicketSerializer", (*SUBMIT_INPUT, TICKET), "Test body.")
    sent = {"datalake_account": "111111111111", "secret_arn": SECRET_ARN, "engine": "mysql",
            "endpoint_identifier": "orders", "justification": "why"}  # fmt: skip
    taken = serializer_class(data=sent)
    assert taken.is_valid(), taken.errors
    assert taken.validated_data["change_ticket"] == "" and taken.validated_data["endpoint_type"] == "source"
    refused = serializer_class(data={**sent, "change_ticket": "ticket 9", "engine": "MySQL"})
    assert not refused.is_valid()
    assert refused.errors["change_ticket"] == ["Must be CHG- and digits."]
    assert refused.errors["engine"][0].startswith("Must be one of mysql, mariadb")
    too_long = serializer_class(data={**sent, "change_ticket": "CHG-" + "1" * 13})
    assert not too_long.is_valid() and "16" in str(too_long.errors["change_ticket"][0])


def test_a_declared_field_becomes_a_form_field_with_its_label_and_hint():
    form_class = input_form("TicketForm", (*SUBMIT_INPUT, TICKET))
    form = form_class({"change_ticket": "  CHG-7 ", "endpoint_type": "target"})
    assert form.fields["change_ticket"].label == "Change ticket"
    assert form.fields["change_ticket"].help_text == "Optional: the change this work belongs to."
    # Whether a field must be given is the validation's to say, with its words.
    assert form.is_valid(), form.errors
    assert form.cleaned_data["change_ticket"] == "CHG-7"
    assert form_class({"endpoint_type": ""}).errors["endpoint_type"]  # a select with no empty choice


def test_a_declared_field_is_validated_by_its_own_rule_and_kept(site, monkeypatch):
    monkeypatch.setattr(grant_input, "SUBMIT_INPUT", (*SUBMIT_INPUT, TICKET))
    monkeypatch.setattr(validation, "SUBMIT_INPUT", (*SUBMIT_INPUT, TICKET))
    assert validation.validate_request_input(**body(change_ticket=" CHG-12 "))["change_ticket"] == "CHG-12"
    assert validation.validate_request_input(**body())["change_ticket"] == ""
    with pytest.raises(ValidationFailed) as refused:
        validation.validate_request_input(**body(change_ticket="ticket"))
    assert refused.value.errors == {"change_ticket": ["Must be a change ticket like CHG-123."]}


def test_the_service_takes_exactly_the_declared_keywords(site):
    users, _ = site
    with pytest.raises(TypeError, match="unexpected keyword arguments: datalake_account$"):
        access_request_submit(requester=users["requester"], **body(datalake_account="111111111111"))
    without = body()
    del without["justification"]
    with pytest.raises(TypeError, match="missing keyword arguments: justification"):
        access_request_submit(requester=users["requester"], **without)
    assert not AccessRequest.objects.exists() and not AuditEvent.objects.exists()


def test_a_blank_value_is_the_fields_default_and_a_required_blank_is_refused_in_its_own_words(site):
    cleaned = validation.validate_request_input(**body(endpoint_type="  ", expires_at="", role_name=" "))
    assert (cleaned["endpoint_type"], cleaned["expires_at"]) == ("source", None)
    assert cleaned["role_name"] == "dms-secret-orders-source"
    with pytest.raises(ValidationFailed) as refused:
        validation.validate_request_input(**body(justification=" ", engine=""))
    assert refused.value.errors["justification"] == ["A justification is required."]
    assert refused.value.errors["engine"][0].startswith("Must be one of")


def test_every_declared_field_has_a_column_that_holds_its_longest_value():
    for field in SUBMIT_INPUT:
        column = AccessRequest._meta.get_field(field.name)
        if field.longest is not None and column.get_internal_type() == "CharField":
            assert field.longest <= column.max_length, field.name


def test_a_value_longer_than_its_column_is_refused_by_name_on_the_page_not_by_the_database(site):
    users, _ = site
    arn = SECRET_ARN[: SECRET_ARN.rindex(":") + 1] + "x" * 3000
    with pytest.raises(ValidationFailed) as refused:
        validation.validate_request_input(**body(secret_arn=arn, replication_instance_arn="a" * 3000))
    limit = next(field.longest for field in SUBMIT_INPUT if field.name == "secret_arn")
    assert refused.value.errors["secret_arn"] == [f"Must be at most {limit} characters (got {len(arn)})."]
    assert set(refused.value.errors) == {"secret_arn", "replication_instance_arn"}
    client = Client()
    client.force_login(users["requester"])
    form = {**body(secret_arn=arn), "datalake_account": "111111111111"}
    page = client.post("/requests/new/", form)
    assert page.status_code == 400 and f"Must be at most {limit} characters" in page.content.decode()
    assert not AccessRequest.objects.exists()
