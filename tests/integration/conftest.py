"""Harness for tests that span processes: a moto server playing AWS, real
Celery workers and beat on Redis, all sharing pytest-django's test database.

Tests here use ``django_db(transaction=True)`` so that what they write is
committed and visible to the workers, and what the workers write is visible
to them.
"""
from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

# The harness's fixtures are registered suite-wide (tests/conftest.py); these
# names stay importable from here for the tests that use them directly.
from tests.live_system import WORKER_SETTINGS, free_port  # noqa: F401


def pytest_collection_modifyitems(config, items):
    reason = None
    if connection.vendor != "postgresql":
        reason = "integration tests need Postgres: set DATABASE_URL"
    elif not settings.CELERY_BROKER_URL.startswith("redis://"):
        reason = "integration tests need Redis: set CELERY_BROKER_URL"
    if reason:
        for item in items:
            if "tests/integration" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=reason))
