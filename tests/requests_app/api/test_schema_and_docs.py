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
    ("/api/v1/requests/{id}/extend/", "post"),
    ("/api/v1/requests/{id}/extension/approve/", "post"),
    ("/api/v1/requests/{id}/extension/reject/", "post"),
    ("/api/v1/requests/{id}/export/", "get"),
    ("/api/v1/audit-events/", "get"),
    ("/api/v1/audit-events/export/", "get"),
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
            if method == "post" and path != "/api/v1/accounts/":
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
