"""The reliability tests run on the integration harness: a moto server, real
Celery workers and beat on Redis, sharing pytest-django's test database
(see tests/integration/conftest.py). Modules that need workers configured
otherwise (more pool processes, another broker, other settings) define their
own ``workers`` fixture with ``running_pool``.
"""
from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from tests.integration.conftest import (  # noqa: F401  (the harness's fixtures)
    aws_faults,
    broker_url,
    faults,
    moto_server,
    moto_world,
    portal_env,
    workers,
)


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
