"""/api/schema/ and /api/docs/: the published contract, served without a CDN."""
from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command
from openapi_spec_validator import validate

CONTRACT = {
    ("/api/v1/accounts/", "get"),
    ("/api/v1/accounts/", "post"),
    ("/api/v1/accounts/{account_id}/", "patch"),
    ("/api/v1/requests/", "get"),
    ("/api/v1/requests/", "post"),
    ("/api/v1/requests/{id}/", "get"),
    ("/api/v1/requests/{id}/plan/", "get"),
    ("/api/v1/requests/{id}/approve/", "post"),
    ("/api/v1/requests/{id}/reject/", "post"),
    ("/api/v1/requests/{id}/cancel/", "post"),
    ("/api/v1/requests/{id}/revoke/", "post"),
    ("/api/v1/requests/{id}/retry/", "post"),
    ("/api/v1/requests/{id}/repair/", "post"),
    ("/api/v1/requests/{id}/repair/approve/", "post"),
    ("/api/v1/requests/{id}/repair/reject/", "post"),
    ("/api/v1/requests/{id}/extend/", "post"),
    ("/api/v1/requests/{id}/extension/approve/", "post"),
    ("/api/v1/requests/{id}/extension/reject/", "post"),
    ("/api/v1/requests/{id}/export/", "get"),
    ("/api/v1/audit-events/", "get"),
    ("/api/v1/tokens/", "get"),
    ("/api/v1/tokens/", "post"),
    ("/api/v1/tokens/{id}/", "delete"),
    ("/api/v1/audit-events/export/", "get"),
    ("/api/v1/requests/{id}/rule-decisions/", "get"),
    ("/api/v1/rules/", "get"),
    ("/api/v1/rules/", "post"),
    ("/api/v1/rules/{id}/", "get"),
    ("/api/v1/rules/{id}/change/", "post"),
    ("/api/v1/rules/{id}/disable/", "post"),
    ("/api/v1/rules/{id}/approve/", "post"),
    ("/api/v1/rules/{id}/reject/", "post"),
    ("/api/v1/request-sets/", "get"),
    ("/api/v1/request-sets/", "post"),
    ("/api/v1/request-sets/{id}/", "get"),
    ("/api/v1/request-sets/{id}/plan/", "get"),
    ("/api/v1/request-sets/{id}/approve/", "post"),
    ("/api/v1/request-sets/{id}/reject/", "post"),
    ("/api/v1/request-sets/{id}/revoke/", "post"),
}


@pytest.fixture(scope="module")
def schema() -> dict:
    from django.test import Client

    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi_and_has_exactly_the_contract(schema):
    validate(schema)
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations == CONTRACT


def test_schema_generation_raises_no_warnings(tmp_path):
    # --fail-on-warn makes every guess drf-spectacular had to make an error.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "schema.yaml"))
    assert yaml.safe_load((tmp_path / "schema.yaml").read_text())["info"]["title"] == "DMS Access Portal API"


def test_every_operation_documents_its_bodies_and_refusals(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "401" in codes, (method, path)
            assert any(code.startswith("2") for code in codes)
            for code, response in operation["responses"].items():
                # The audit export streams JSON Lines; its refusals are JSON like the rest.
                media = "application/jsonl" if (path, code) == ("/api/v1/audit-events/export/", "200") else "application/json"
                assert response.get("content", {}).get(media, {}).get("schema"), (method, path, code)
            if "{id}" in path:
                assert "404" in codes
            if method == "post" and path not in (
                "/api/v1/accounts/", "/api/v1/tokens/", "/api/v1/rules/", "/api/v1/request-sets/"
            ):
                assert "409" in codes, (method, path)
            if method == "post" and path.endswith(("approve/", "reject/", "cancel/", "revoke/", "retry/")):
                assert "403" in codes


def test_submit_documents_the_idempotency_key_and_lists_take_their_filters(schema):
    submit = schema["paths"]["/api/v1/requests/"]["post"]
    assert {"Idempotency-Key"} <= {p["name"] for p in submit["parameters"] if p["in"] == "header"}
    listing = {p["name"] for p in schema["paths"]["/api/v1/requests/"]["get"]["parameters"]}
    assert {"state", "datalake_account", "remote_account", "mine", "awaiting_my_approval", "page", "page_size"} <= listing
    audit = {p["name"] for p in schema["paths"]["/api/v1/audit-events/"]["get"]["parameters"]}
    assert {"request", "account", "actor", "since", "until", "cursor", "page_size"} <= audit


def test_token_auth_is_declared(schema):
    assert schema["components"]["securitySchemes"]["tokenAuth"]["type"] == "apiKey"


def test_the_swagger_ui_is_served_by_the_portal_itself(client):
    page = client.get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/") for source in sources), sources
    assert "<script>" not in html  # the start-up script is a file too, so a strict CSP can forbid inline code
    script = client.get(next(s for s in sources if "script" in s))
    assert script.status_code == 200
    assert "/api/schema/" in script.content.decode()
    bundle = next(source for source in sources if source.endswith("swagger-ui-bundle.js"))
    assert bundle.startswith("/static/drf_spectacular_sidecar/")


def _body_schema(schema: dict, path: str) -> dict:
    reference = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return schema["components"]["schemas"][reference.rsplit("/", 1)[1]]


def _query(schema: dict, path: str, name: str) -> dict:
    (parameter,) = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name]
    return parameter["schema"]


@pytest.mark.parametrize(
    ("where", "value", "allowed"),
    [
        (("body", "/api/v1/requests/{id}/approve/", "comment"), "fine\x00", False),
        (("body", "/api/v1/requests/{id}/approve/", "comment"), "   ", True),
        (("body", "/api/v1/requests/{id}/reject/", "comment"), " \t\u3000", False),
        (("body", "/api/v1/requests/{id}/reject/", "comment"), " no ", True),
        (("items", "/api/v1/accounts/", "approvers"), "av\x00ery", False),
        (("query", "/api/v1/audit-events/", "actor"), "\x00", False),
        (("query", "/api/v1/audit-events/", "actor"), "sam", True),
    ],
)
def test_the_schema_forbids_the_text_the_server_refuses(schema, where, value, allowed):
    # DRF's CharField refuses NUL and, where a text is required, one that is
    # blank once trimmed; the schema says the same with a pattern.
    kind, path, name = where
    if kind == "query":
        field = _query(schema, path, name)
    else:
        field = _body_schema(schema, path)["properties"][name]
        field = field["items"] if kind == "items" else field
    assert bool(re.search(field["pattern"], value)) is allowed


def test_the_schema_states_the_field_rules_the_server_applies(schema):
    submit = _body_schema(schema, "/api/v1/requests/")["properties"]
    assert submit["datalake_account"]["pattern"] == "^[0-9]{12}$"
    assert submit["justification"]["maxLength"] == 4000
    role_name, blank = submit["role_name"]["oneOf"]
    assert role_name["maxLength"] == 64 and blank["maxLength"] == 0
    assert not re.search(role_name["pattern"], "") and not re.search(role_name["pattern"], "a b")
    assert re.search(submit["endpoint_identifier"]["pattern"], "db-1")
    for bad in ("1db", "db--1", "db-", " db"):
        assert not re.search(submit["endpoint_identifier"]["pattern"], bad)
    assert _query(schema, "/api/v1/requests/", "page")["minimum"] == 1
    assert _query(schema, "/api/v1/audit-events/", "page_size")["minimum"] == 1
