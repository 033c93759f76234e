"""The production configuration is hardened: Django's deployment checklist
passes without a warning, plain HTTP is turned away, and every answer
carries HSTS and the other security headers.

Each test starts the portal in a process of its own with the environment of
.env.example (the documented production settings) plus a real secret key,
exactly as a deployment would, rather than overriding settings in this
process.
"""
from __future__ import annotations

import json
import base64
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
SECURITY_HEADERS = {
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
    "Strict-Transport-Security",
}


def example_environment() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        **example_environment(),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        "AUDIT_CHAIN_KEYS": "prod-1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "PORTAL_REQUIRE_SECRET_KEY": "true",
        "PORTAL_INSTANCE_ID": "prod1",
        # Nothing here touches the database or the broker; no server is needed.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "CELERY_BROKER_URL": "memory://",
        "CACHE_URL": "",
        "PORTAL_VAR_DIR": str(tmp_path),
    }
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_example_production_settings_pass_the_deployment_checklist(production_env):
    result = manage(production_env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "AUDIT_CHAIN_KEYS must be set"),
        ("prod-1:" + base64.b64encode(b"short").decode(), "shorter than 32 bytes"),
        ("sha256-legacy:" + base64.b64encode(bytes(32)).decode(), "bad key id"),
        ("prod-1:not base64!", "not base64"),
    ],
)
def test_production_refuses_to_start_without_a_usable_audit_chain_key(production_env, tmp_path, value, complaint):
    production_env["AUDIT_CHAIN_KEYS"] = value

    result = manage(production_env, "check")

    assert result.returncode != 0
    assert complaint in result.stderr
    assert not (tmp_path / "audit_chain_keys").exists()


def test_without_https_the_checklist_complains(production_env):
    # The same check, shown able to fail: HTTPS off loses HSTS, the redirect and secure cookies.
    production_env.update(PORTAL_HTTPS="false")

    result = manage(production_env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stdout + result.stderr


INSTANCE_ID_PROBE = "from django.conf import settings; print('INSTANCE=' + settings.PORTAL_INSTANCE_ID)"


def test_production_refuses_to_start_without_an_instance_id(production_env):
    del production_env["PORTAL_INSTANCE_ID"]
    result = manage(production_env, "shell", "-c", INSTANCE_ID_PROBE)
    assert result.returncode != 0
    assert "PORTAL_INSTANCE_ID must be set" in result.stderr


@pytest.mark.parametrize("value", ["Prod", "prod-eu", "prod_1", "a" * 33, "pr\u00f6d"])
def test_an_instance_id_that_cannot_go_into_a_sid_stops_the_process(production_env, value):
    # A Sid holds letters and digits only; upper case would blur where the instance id ends.
    production_env["PORTAL_INSTANCE_ID"] = value.encode().decode("unicode_escape")
    result = manage(production_env, "shell", "-c", INSTANCE_ID_PROBE)
    assert result.returncode != 0
    assert "PORTAL_INSTANCE_ID must be 1 to 32 lower-case letters" in result.stderr


def test_the_quickstart_makes_an_instance_id_once_and_keeps_it(production_env, tmp_path):
    for name in ("PORTAL_REQUIRE_SECRET_KEY", "PORTAL_INSTANCE_ID"):
        del production_env[name]
    first = manage(production_env, "shell", "-c", INSTANCE_ID_PROBE)
    second = manage(production_env, "shell", "-c", INSTANCE_ID_PROBE)
    assert first.returncode == 0, first.stderr
    value = first.stdout.split("INSTANCE=", 1)[1].strip()
    assert second.stdout.split("INSTANCE=", 1)[1].strip() == value
    assert (tmp_path / "instance_id").read_text() == value
    assert value != "legacy" and value.isalnum() and value == value.lower()


def test_a_quickstart_from_before_instance_ids_keeps_what_it_made_as_legacy(production_env, tmp_path):
    for name in ("PORTAL_REQUIRE_SECRET_KEY", "PORTAL_INSTANCE_ID"):
        del production_env[name]
    (tmp_path / "portal.sqlite3").write_bytes(b"")  # the quickstart's database, from an earlier version
    result = manage(production_env, "shell", "-c", INSTANCE_ID_PROBE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("INSTANCE=", 1)[1].strip() == "legacy"


# Runs in the production process: what a browser and a probe get back.
PROBE = """
import json
from django.test import Client
client = Client()
paths = ["/auth/login/", "/", "/requests/", "/api/v1/requests/", "/api/schema/", "/api/docs/",
         "/admin/login/", "/healthz", "/no/such/page/", "/static/portal/portal.css"]
answers = {}
for path in paths:
    secure = client.get(path, secure=True, HTTP_HOST="portal.example.com", HTTP_X_FORWARDED_PROTO="https")
    plain = client.get(path, HTTP_HOST="portal.example.com")
    answers[path] = {
        "secure_status": secure.status_code,
        "secure_headers": dict(secure.headers),
        "plain_status": plain.status_code,
        "plain_location": plain.headers.get("Location", ""),
        "csrf_cookie_secure": [bool(cookie["secure"]) for name, cookie in secure.cookies.items() if name == "csrftoken"],
    }
print("PROBE" + json.dumps(answers))
"""


def test_in_production_every_answer_is_https_only_and_carries_the_security_headers(production_env, figures):
    result = manage(production_env, "shell", "-c", PROBE)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.split("PROBE", 1)[1])

    figures.record(paths_probed=len(answers), security_headers_checked=sorted(SECURITY_HEADERS))
    for path, answer in answers.items():
        headers = answer["secure_headers"]
        assert SECURITY_HEADERS <= set(headers), (path, sorted(headers))
        assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert all(answer["csrf_cookie_secure"]), path
        if path in ("/healthz",):
            # Probes inside the network speak plain HTTP and must not be redirected.
            assert answer["plain_status"] == 200
        else:
            assert (answer["plain_status"], answer["plain_location"]) == (301, f"https://portal.example.com{path}")
    assert answers["/auth/login/"]["secure_status"] == 200


def test_production_refuses_to_start_without_a_field_encryption_key(production_env):
    del production_env["FIELD_ENCRYPTION_KEYS"]

    result = manage(production_env, "check")

    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS must be set" in result.stderr
    assert not (Path(production_env["PORTAL_VAR_DIR"]) / "field_encryption_key").exists()


def test_a_malformed_field_encryption_key_stops_the_process_without_echoing_it(production_env):
    production_env["FIELD_ENCRYPTION_KEYS"] = "not-a-fernet-key-but-a-secret-all-the-same"

    result = manage(production_env, "check")

    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS must be Fernet keys" in result.stderr
    assert "not-a-fernet-key-but-a-secret-all-the-same" not in result.stdout + result.stderr
