"""The reliability tests run on the live system (tests/live_system.py): a moto
server, real Celery workers on Redis and beat, sharing pytest-django's test
database.

To keep the suite short, the modules of this package share one moto server
and one set of workers (starting them costs more than most tests here); each
module starts its own beat, so no sweep runs while a module that brings its
own workers and broker (test_outages) is on. The shared workers are
configured for every module at once: three pool processes each (one request
can stop at each grant step at the same moment), the production retry budget
with shortened waits, a long step lease (these modules kill no worker, and
fifty grants on two cores may delay a heartbeat), and logging at DEBUG.
test_crashes stops them and runs workers and beat of its own with the
production timing of portal/settings.py.
"""
from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.db import connection

from tests import live_system
from tests.integration.processes import CeleryProcess, WorkerPool
from tests.integration.world import FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, ROOT_KEY_STATEMENT
from tests.requests_app.rows import REMOTE_ID

RETRY_BUDGET = 10  # PROVISIONING_RETRY_MAX_RETRIES's production default
LEASE_SECONDS = 300
SHARED_WORKER_SETTINGS = {
    "PROVISIONING_RETRY_MAX_RETRIES": str(RETRY_BUDGET),
    "PROVISIONING_RETRY_BACKOFF": "1",
    "PROVISIONING_RETRY_BACKOFF_MAX": "2",
    "PROVISIONING_STEP_LEASE_SECONDS": str(LEASE_SECONDS),
    # Each module's beat sweeps; a worker's own sweep would also run while
    # test_outages's workers are on, and could hand one of its lapsed steps to
    # these workers and their long lease.
    "PROVISIONING_WORKER_SWEEP": "0",
    # The whole run logs everything, so test_secret_values searches the most
    # a log can hold for secret values.
    "LOG_LEVEL": "DEBUG",
}

# The live system's fixtures (tests/live_system.py), shared by the whole
# package instead of started again for each module.
moto_server = pytest.fixture(scope="package", name="moto_server")(live_system.moto_server.__wrapped__)
moto_world = pytest.fixture(scope="package", name="moto_world")(live_system.moto_world.__wrapped__)
portal_env = pytest.fixture(scope="package", name="portal_env")(live_system.portal_env.__wrapped__)


def pytest_collection_modifyitems(config, items):
    reason = None
    if connection.vendor != "postgresql":
        reason = "reliability tests need Postgres: set DATABASE_URL"
    elif not settings.CELERY_BROKER_URL.startswith("redis://"):
        reason = "reliability tests need Redis: set CELERY_BROKER_URL"
    if reason:
        for item in items:
            if "tests/reliability" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="package")
def worker_log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("celery-logs")


@pytest.fixture(scope="package")
def shared_workers(portal_env, worker_log_dir):
    """Two worker processes of three pool processes each, for the whole package."""
    pool = WorkerPool({**portal_env, **SHARED_WORKER_SETTINGS}, worker_log_dir, concurrency=3)
    try:
        pool.start(2)
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def workers(shared_workers, portal_env, worker_log_dir, request):
    """The shared workers, with a beat of this module's own running the sweep every second."""
    log = worker_log_dir / f"beat-{request.module.__name__.rsplit('.', 1)[-1]}.log"
    beat = CeleryProcess(["beat", "-s", str(log.with_suffix(".schedule")), "--loglevel=INFO"], portal_env, log)
    try:
        beat.wait_for_log("beat: Starting...")
        yield shared_workers
    finally:
        beat.stop()


def restore_remote_policies(world) -> None:
    """Put the seeded secret and key policies back, dropping every grant's statement."""
    world.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=world.secret_arn,
        ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN_SECRET_STATEMENT]}),
    )
    world.admin(REMOTE_ID, "kms").put_key_policy(
        KeyId=world.key_arn,
        PolicyName="default",
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Id": "key-policy-source-db-credentials",
                "Statement": [ROOT_KEY_STATEMENT, FOREIGN_KEY_STATEMENT],
            }
        ),
    )


@pytest.fixture(scope="module", autouse=True)
def original_remote_policies(moto_world):
    """Each module starts from the seeded secret and key policies: grants of
    earlier modules would otherwise pile up towards AWS's size limits (the
    secret policy's 20,480 characters hold about 65 grants)."""
    restore_remote_policies(moto_world)
