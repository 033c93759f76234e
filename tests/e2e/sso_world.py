"""Single sign-on as deployed: the test provider and a portal web process, both on loopback.

The provider (tests/e2e/oidc_provider) and the portal (gunicorn, configured
through the OIDC_* variables exactly as in production) run as processes of
their own; the portal shares pytest-django's test database, so tests write
their users through the ORM (``django_db(transaction=True)``) and read back
what the portal wrote.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from django.conf import settings as django_settings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.live_system import free_port
from tests.live_system import test_database_url as _test_database_url

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "dms-access-portal"


class Directory:
    """The provider's people (see tests/e2e/oidc_provider/__init__.py)."""

    def __init__(self, path: Path):
        self.path = path
        self._people: dict[str, dict] = {}
        self._write()

    def put(self, login: str, *, password: str, **claims) -> None:
        """Add or change a person; ``claims`` replace what the provider says about them."""
        self._people[login] = {"password": password, "claims": claims}
        self._write()

    def _write(self) -> None:
        staged = self.path.with_suffix(".new")
        staged.write_text(json.dumps(self._people))
        staged.replace(self.path)  # the provider never reads half a file


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_serving(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(url, timeout=2).status_code < 500:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} is not serving {url}:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@dataclass
class SsoWorld:
    portal_url: str
    issuer: str
    client_secret: str
    directory: Directory
    provider: Process
    portal: Process


def _rsa_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def start_sso_world(tmp: Path, *, broker_url: str) -> SsoWorld:
    """Start the provider and the portal (in parallel), and wait until both serve."""
    idp_port, portal_port = free_port(), free_port()
    idp_url, portal_url = f"http://127.0.0.1:{idp_port}", f"http://127.0.0.1:{portal_port}"
    issuer = f"{idp_url}/o"
    client_secret = secrets.token_urlsafe(24)
    key_file = tmp / "idp-key.pem"
    key_file.write_bytes(_rsa_key_pem())
    directory = Directory(tmp / "directory.json")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OIDC_", "DJANGO_SETTINGS_MODULE"))}

    provider = Process(
        "provider",
        [sys.executable, "-m", "tests.e2e.oidc_provider"],
        {
            **base,
            "DJANGO_SETTINGS_MODULE": "tests.e2e.oidc_provider.settings",
            "IDP_SECRET_KEY": secrets.token_urlsafe(32),
            "IDP_DATABASE": str(tmp / "idp.sqlite3"),
            "IDP_DIRECTORY": str(directory.path),
            "IDP_RSA_KEY_FILE": str(key_file),
            "IDP_ISSUER": issuer,
            "IDP_PORT": str(idp_port),
            "IDP_CLIENT_ID": CLIENT_ID,
            "IDP_CLIENT_SECRET": client_secret,
            "IDP_REDIRECT_URI": f"{portal_url}/oidc/callback/",
            # oauthlib insists on HTTPS unless told it runs on a test bench.
            "OAUTHLIB_INSECURE_TRANSPORT": "1",
        },
        tmp / "provider.log",
    )
    portal = Process(
        "portal",
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "-b", f"127.0.0.1:{portal_port}",
         "--workers", "1", "--threads", "4"],
        {
            **base,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": _test_database_url(),
            "DATABASE_CONN_MAX_AGE": "0",
            "CELERY_BROKER_URL": broker_url,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "PORTAL_VAR_DIR": str(tmp / "portal-var"),
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": client_secret,
            "OIDC_OP_ISSUER": issuer,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{issuer}/authorize/",
            "OIDC_OP_TOKEN_ENDPOINT": f"{issuer}/token/",
            "OIDC_OP_USER_ENDPOINT": f"{issuer}/userinfo/",
            "OIDC_OP_JWKS_ENDPOINT": f"{issuer}/.well-known/jwks.json",
            "OIDC_RP_SCOPES": "openid email profile groups",
            # The test reads what the portal encrypted (the kept refresh token).
            "FIELD_ENCRYPTION_KEYS": ",".join(django_settings.FIELD_ENCRYPTION_KEYS),
        },
        tmp / "portal.log",
    )
    try:
        provider.wait_until_serving(f"{issuer}/.well-known/openid-configuration")
        portal.wait_until_serving(f"{portal_url}/healthz")
    except Exception:
        provider.stop()
        portal.stop()
        raise
    return SsoWorld(portal_url, issuer, client_secret, directory, provider, portal)
