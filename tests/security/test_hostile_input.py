"""Whatever anyone sends, through the form or the API: refused with a 4xx
that names the field, or taken and shown escaped. Never a 500.

Hand-picked traps (ARNs almost right, identifiers with Unicode look-alikes,
injected JSON, bodies too large) and hypothesis-generated input for every
field of the request form and of the API. XSS payloads in every free-text
field are shown as text on every page that shows them. (schemathesis runs
every documented API operation: tests/requests_app/api/test_schemathesis.py.)
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from requests_app.models import AccessRequest, AwsAccount
from requests_app.services import access_request_approve, access_request_reject
from requests_app.validation import REQUEST_FIELDS
from tests.requests_app.page_rows import KEY_ARN, SECRET_ARN, make_request

pytestmark = pytest.mark.django_db

GOOD = {
    "datalake_account": "111111111111",
    "secret_arn": SECRET_ARN,
    "kms_key_arn": KEY_ARN,
    "engine": "postgres",
    "endpoint_identifier": "orders-source",
    "endpoint_type": "source",
    "database_name": "orders",
    "justification": "Nightly replication of the orders database.",
}
SECRET = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:prod/source-db/credentials-aB3xYz"

# (field, value): each must be refused with a message on that field.
TRAPS = [
    ("secret_arn", SECRET.replace("arn:aws:", "arn:aws-iso:")),  # a partition the portal does not serve
    ("secret_arn", SECRET.replace("arn:aws:", "arn:AWS:")),
    ("secret_arn", SECRET.replace("eu-west-1", "eu-west-99x")),
    ("secret_arn", SECRET.replace("eu-west-1", "EU-WEST-1")),
    ("secret_arn", SECRET.replace("222222222222", "22222222222")),  # 11 digits
    ("secret_arn", SECRET.replace("222222222222", "２２２２２２２２２２２２")),  # full-width digits
    ("secret_arn", SECRET.replace("222222222222", "٢٢٢٢٢٢٢٢٢٢٢٢")),  # Arabic-Indic digits
    ("secret_arn", SECRET.replace(":secretsmanager:", ":secretsmanagеr:")),  # Cyrillic е
    ("secret_arn", SECRET.replace(":kms:", ":kms:").replace(":secretsmanager:", ":kms:")),
    ("secret_arn", SECRET + "\u200b"),  # zero-width space
    ("secret_arn", SECRET.replace("eu-west-1", "eu-west-1\t")),
    ("secret_arn", SECRET.replace("prod/", "prod/\u202e")),  # right-to-left override
    ("secret_arn", SECRET.replace("credentials", 'x","Principal":"*","Effect":"Allow')),  # injected JSON
    ("secret_arn", SECRET.replace("credentials", "c\x00")),
    ("secret_arn", SECRET.replace("credentials", "c\ncredentials")),
    ("secret_arn", "arn:aws:secretsmanager:eu-west-1:333333333333:secret:other-aB3xYz\n" + SECRET),
    ("kms_key_arn", KEY_ARN.replace("222222222222", "111111111111111")),
    ("kms_key_arn", KEY_ARN.replace("key/", "key/*")),
    ("kms_key_arn", "arn:aws:kms:eu-west-1:222222222222:alias/aws/secretsmanager\x00"),
    ("kms_key_arn", '{"Fn::GetAtt": ["Key", "Arn"]}'),
    ("endpoint_identifier", "orders-sоurce"),  # Cyrillic о
    ("endpoint_identifier", "orders\u200b-source"),
    ("endpoint_identifier", "orders--source"),
    ("endpoint_identifier", "orders-source-"),
    ("endpoint_identifier", "1orders"),
    ("endpoint_identifier", "ｏｒｄｅｒｓ"),  # full-width letters
    ("endpoint_identifier", "orders\u0301-source"),  # a combining accent
    ("endpoint_identifier", "<script>alert(1)</script>"),
    ("endpoint_identifier", "a" * 256),
    ("datalake_account", "11111111111l"),  # a letter l for the last 1
    ("datalake_account", "１１１１１１１１１１１１"),
    ("datalake_account", "222222222222"),  # a Remote account, not a DataLake one
    ("engine", "mysql\u0000"),
    ("engine", "MySQL"),
    ("engine", "sqlserver; DROP TABLE requests_app_accessrequest"),
    ("endpoint_type", "both"),
    ("role_name", "dms-role\u200b"),
    ("role_name", "dms role"),
    ("role_name", "r" * 65),
    ("role_name", "dms/../../admin"),
    ("justification", ""),
    ("justification", "   "),
    ("justification", "x" * 100_000),
]


@pytest.fixture
def requester(people):
    return people["requester"]


def web_post(user, data) -> tuple[int, str]:
    client = Client()
    client.force_login(user)
    response = client.post("/requests/new/", data)
    return response.status_code, response.content.decode()


def api_post(user, data) -> tuple[int, dict]:
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/requests/", data, format="json")
    return response.status_code, response.json()


@pytest.mark.parametrize(("field", "value"), TRAPS, ids=[f"{field}-{n}" for n, (field, _) in enumerate(TRAPS)])
def test_almost_right_values_are_refused_naming_the_field(field, value, site, requester, fake_aws):
    api_status, api_body = api_post(requester, {**GOOD, field: value})
    web_status, web_page = web_post(requester, {**GOOD, field: value})

    assert api_status == 400 and field in api_body["errors"], (api_status, api_body)
    assert web_status == 400 and f'id="errors_{field}" aria-live="polite"><p>' in web_page
    assert not AccessRequest.objects.exists()


def test_bodies_too_large_or_with_too_many_fields_are_a_400(site, requester):
    client = APIClient()
    client.force_authenticate(requester)
    huge = json.dumps({**GOOD, "justification": "x" * 3_000_000})
    assert client.post("/api/v1/requests/", huge, content_type="application/json").status_code in (400, 413)

    browser = Client()
    browser.force_login(requester)
    assert browser.post("/requests/new/", {**GOOD, "justification": "x" * 3_000_000}).status_code in (400, 413)
    many = {f"field{n}": "x" for n in range(2000)}
    assert browser.post("/requests/new/", {**GOOD, **many}).status_code == 400
    assert not AccessRequest.objects.exists()


# Text a person can type or paste, with the characters that break naive code.
hostile_text = st.one_of(
    st.text(max_size=80),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Mn", "Nd", "Lo", "Sm", "Po"]), max_size=40),
    st.sampled_from(["<script>alert(1)</script>", "'\"><img src=x onerror=alert(1)>", "{{7*7}}", "%s%n", "../" * 8,
                     "arn:aws:secretsmanager:::", '{"a": [1, {"b": null}]}', "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace")]),
)
# The runbook's request with one or two of its fields replaced by hostile text.
form_values = st.lists(st.tuples(st.sampled_from(sorted(GOOD)), hostile_text), min_size=1, max_size=2).map(
    lambda changes: {**GOOD, **dict(changes)}
)
generated = Counter()


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=form_values)
def test_generated_form_and_api_input_never_breaks_the_portal(data, site, requester, fake_aws, figures):
    if data["endpoint_identifier"] == GOOD["endpoint_identifier"]:
        # A live request holds its endpoint name; give each example its own.
        data = {**data, "endpoint_identifier": f"orders-source-{generated['examples']}"}
    clean = {name: value.replace("\x00", "") for name, value in data.items()}  # browsers never send NUL in a form
    web_status, _ = web_post(requester, {**clean, "endpoint_identifier": clean["endpoint_identifier"] + "-web"})
    api_status, body = api_post(requester, data)
    generated.update({"examples": 1, f"form {web_status}": 1, f"api {api_status}": 1})
    figures.record(**generated)

    assert web_status in (302, 400)
    assert api_status in (201, 400), body
    if api_status == 400:
        assert set(body["errors"]) <= set(REQUEST_FIELDS) | {"non_field_errors"}
    else:
        # What was taken is shown back, escaped, on the request's page.
        client = Client()
        client.force_login(requester)
        page = client.get(f"/requests/{body['id']}/")
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.content.decode()


XSS = "<script>alert('xss')</script><img src=x onerror=alert(1)>\"'><svg onload=alert(1)>"


def test_xss_in_every_free_text_field_is_shown_as_text_on_every_page(people, site, figures):
    site["remote"].name = f"Remote {XSS}"[:100]
    site["remote"].save(update_fields=["name"])
    approved = make_request(people["requester"], site, justification=XSS)
    AccessRequest.objects.filter(pk=approved.pk).update(database_name=XSS)
    access_request_approve(request_id=approved.pk, plan_hash=approved.plan_hash, user=people["approver"], comment=XSS)
    rejected = make_request(people["requester"], site, justification=XSS)
    access_request_reject(request_id=rejected.pk, user=people["approver"], comment=XSS)

    pages = {}
    for role in ("requester", "approver", "staff"):
        client = Client()
        client.force_login(people[role])
        for path in ("/", "/requests/", "/approvals/", "/audit/", "/accounts/",
                     f"/requests/{approved.pk}/", f"/requests/{approved.pk}/live/",
                     f"/requests/{rejected.pk}/", f"/requests/{rejected.pk}/live/"):  # fmt: skip
            response = client.get(path)
            assert response.status_code == 200, (role, path)
            pages[f"{role} {path}"] = response.content.decode()
    shown = [name for name, html in pages.items() if "&lt;script&gt;alert(" in html]
    figures.record(pages_rendered=len(pages), pages_showing_the_payload_escaped=len(shown))
    assert [name for name, html in pages.items() if "<script>alert(" in html or "<svg onload" in html] == []
    assert [name for name, html in pages.items() if "onerror=alert(1)>" in html.replace("&gt;", ">") and "<img src=x" in html] == []
    # It was on the pages, as text: the justification, the comments, the account name.
    assert any(name.endswith(f"/requests/{approved.pk}/") for name in shown)
    assert any(name.endswith(f"/requests/{rejected.pk}/") for name in shown)
    assert any(name.endswith("/accounts/") for name in shown)
    assert AwsAccount.objects.filter(name__contains="<script>").exists()
