"""docker-compose.yml: the production layout an operator starts.

Docker does not run in CI; `docker-compose config` validates and normalises the
file without it, and the normalised form is what these tests read.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
APP_SERVICES = {"migrate", "web", "worker", "beat"}
# Read by boto3/botocore rather than by the portal's own code.
BOTO_VARIABLES = {
    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
}
_ENV_READ = re.compile(
    r"(?:os\.environ\.get|os\.getenv|env_bool|env_list)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']"
    r"|os\.environ\[\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*\]"
)


def _compose(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose binary not installed (apt-get install docker-compose)")
    # Read the committed defaults only: neither the caller's environment nor a
    # local .env (which compose reads for interpolation) may change the result.
    env = {k: v for k, v in os.environ.items() if k not in {"PORTAL_ENV_FILE", "POSTGRES_PASSWORD"}}
    with tempfile.NamedTemporaryFile(suffix=".env") as no_interpolation:
        return subprocess.run(
            [
                "docker-compose", "--project-directory", str(ROOT),
                "-f", str(ROOT / "docker-compose.yml"), "--env-file", no_interpolation.name,
                "--profile", "demo", *args,
            ],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


@pytest.fixture(scope="module")
def config() -> dict:
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid():
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_services_are_the_production_set_plus_demo_moto(config):
    assert set(config["services"]) == {
        "postgres", "redis", "web", "worker", "beat", "migrate", "moto"
    }


def test_moto_runs_only_in_the_demo_profile(config):
    moto = config["services"]["moto"]
    assert moto["profiles"] == ["demo"]
    assert moto["image"].startswith("motoserver/moto")
    assert [p["target"] for p in moto["ports"]] == [5000]
    for name, service in config["services"].items():
        if name != "moto":
            assert "profiles" not in service, name
            assert "moto" not in service.get("depends_on", {}), name


@pytest.mark.parametrize(
    ("service", "expected"),
    [("postgres", "pg_isready"), ("redis", "redis-cli ping"), ("web", "/healthz")],
)
def test_healthchecks(config, service, expected):
    test = config["services"][service]["healthcheck"]["test"]
    assert test[0] in {"CMD", "CMD-SHELL"}
    assert expected in " ".join(test[1:])


def test_web_healthcheck_host_is_allowed_by_the_example_settings(config):
    # Django answers 400 to a Host not in ALLOWED_HOSTS, which would mark web unhealthy.
    test = " ".join(config["services"]["web"]["healthcheck"]["test"])
    host = urlsplit(re.search(r"https?://[^'\"\s]+", test).group(0)).hostname
    assert host in _env_example()["ALLOWED_HOSTS"].split(",")
    assert "urllib" in test


def test_app_processes_start_only_after_a_successful_migration(config):
    services = config["services"]
    assert services["migrate"]["command"][-2:] == ["migrate", "--noinput"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart", "no") == "no"
    for name in APP_SERVICES - {"migrate"}:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_commands_run_gunicorn_celery_worker_and_beat(config):
    services = config["services"]
    assert services["web"]["command"][:2] == ["gunicorn", "portal.wsgi:application"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "portal", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "portal", "beat"]


def test_app_services_get_the_example_environment(config):
    example = _env_example()
    for name in APP_SERVICES:
        environment = {k: str(v) for k, v in config["services"][name]["environment"].items()}
        if name == "migrate":
            # Only migrate knows the owner role's URL.
            assert set(environment) - set(example) == {"MIGRATION_DATABASE_URL"}
            environment.pop("MIGRATION_DATABASE_URL")
        assert environment == example, name


def test_example_urls_point_at_the_compose_services(config):
    example = _env_example()
    assert urlsplit(example["DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(example["CELERY_BROKER_URL"]).hostname == "redis"
    owner = urlsplit(config["services"]["migrate"]["environment"]["MIGRATION_DATABASE_URL"])
    postgres = config["services"]["postgres"]["environment"]
    assert (owner.hostname, owner.username, owner.password, owner.path.lstrip("/")) == (
        "postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
    )
    # The running portal connects to the same database as another role.
    runtime = urlsplit(example["DATABASE_URL"])
    assert (runtime.hostname, runtime.port, runtime.path) == (owner.hostname, owner.port, owner.path)
    assert runtime.username != owner.username


def test_only_migrate_runs_as_the_owner_of_the_tables(config):
    assert "MIGRATION_DATABASE_URL" not in _env_example()
    for name in APP_SERVICES - {"migrate"}:
        assert "MIGRATION_DATABASE_URL" not in config["services"][name]["environment"], name


def test_example_holds_only_variables_the_code_reads():
    read = set(BOTO_VARIABLES)
    for package in ("portal", "requests_app", "provisioning"):
        for source in (ROOT / package).rglob("*.py"):
            read.update(a or b for a, b in _ENV_READ.findall(source.read_text()))
    assert set(_env_example()) - read == set()


def test_example_is_safe_for_production():
    example = _env_example()
    assert example["DEBUG"] == "false"
    assert example["SECRET_KEY"] == ""
    assert example["FIELD_ENCRYPTION_KEYS"] == ""
    assert example["PORTAL_INSTANCE_ID"] == ""  # chosen per deployment, never shared
    assert example["AUDIT_CHAIN_KEYS"] == ""
    assert example["AWS_ENDPOINT_URL"] == ""
