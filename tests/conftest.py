"""Fixtures shared by the whole suite."""
import base64
import os

import pytest

# No test may ever reach real AWS: fake credentials, a fixed region.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.pop("AWS_PROFILE", None)
# The suite's portal deployment, fixed (tests.aws_world.INSTANCE_ID): in the
# environment for the processes the live system starts, and in the settings
# of this process, which pytest-django may have loaded before this file.
os.environ["PORTAL_INSTANCE_ID"] = "testportal"
from django.conf import settings  # noqa: E402

settings.PORTAL_INSTANCE_ID = os.environ["PORTAL_INSTANCE_ID"]

# The suite files and logs in far more often than a person: rate limits so high
# that no test meets them by accident, here and in the portals the tests start
# (web servers, the quickstart). The tests of the limits set their own.
os.environ.setdefault("PORTAL_API_RATE", "1000000/min")
os.environ.setdefault("PORTAL_AWS_RATE", "1000000/min")


def _generous_rate_limits() -> None:
    # pytest-django may have read the settings before this file ran.
    from django.conf import settings

    if settings.configured:
        settings.PORTAL_API_RATE = os.environ["PORTAL_API_RATE"]
        settings.PORTAL_AWS_RATE = os.environ["PORTAL_AWS_RATE"]


_generous_rate_limits()

# A fixed audit chain key, for this process and the workers it starts.
TEST_AUDIT_CHAIN_KEYS = "test-1:" + base64.b64encode(b"audit chain key of the test suite").decode()
os.environ["AUDIT_CHAIN_KEYS"] = TEST_AUDIT_CHAIN_KEYS

# The runbook's AWS world in moto (fixtures ``aws`` and ``world``), shared by
# the engine's and the portal's tests; the live system (moto server, Celery
# workers) shared by the integration, reliability and browser tests; the
# ``figures`` the reliability and security tests report.
pytest_plugins = ["tests.aws_world", "tests.live_system", "tests.figures"]


@pytest.fixture(autouse=True, scope="session")
def _fixed_audit_chain_key():
    # Django may have read its settings before this module set the variable.
    from django.conf import settings

    settings.AUDIT_CHAIN_KEYS = [("test-1", b"audit chain key of the test suite")]


@pytest.fixture(autouse=True, scope="session")
def _flush_past_the_audit_trail_triggers():
    """Transactional tests end with a flush (TRUNCATE), which the audit table's
    trigger refuses; the suite's superuser flushes with triggers off, as only
    a superuser can."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET LOCAL session_replication_role = replica", *statements] if statements else statements

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original
