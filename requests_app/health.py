"""Liveness and readiness, for load balancers and orchestrators.

``/healthz`` answers as long as the process serves HTTP: it touches nothing
else, so a database outage never gets healthy web processes restarted.
``/readyz`` checks what a request needs (the database, and the broker the
workers listen on) and answers 503 when one is missing, so traffic goes
elsewhere until it is back. Which one is down, and why, goes to the log only:
the probe is open to anyone, and a driver's error names hosts, ports and users.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    reason: str = ""


def check_database(alias: str = "default") -> CheckResult:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready", never a 500
        return CheckResult("database", False, f"{type(exc).__name__}: {exc}".strip())
    return CheckResult("database", True)


def check_broker() -> CheckResult:
    from portal.celery import app

    timeout = settings.READYZ_BROKER_TIMEOUT
    try:
        # The URL from settings on every call, so a changed setting is what
        # gets checked.
        with app.connection_for_write(
            url=settings.CELERY_BROKER_URL,
            connect_timeout=timeout,
            transport_options={"socket_connect_timeout": timeout, "socket_timeout": timeout},
        ) as connection:
            # One attempt, bounded in time: readiness probes must answer fast.
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            if connection.transport_cls == "filesystem":
                _check_filesystem_broker(connection.transport_options)
    except Exception as exc:
        return CheckResult("broker", False, f"{type(exc).__name__}: {exc}".strip())
    return CheckResult("broker", True)


def _check_filesystem_broker(options: dict) -> None:
    # Connecting to the filesystem transport always succeeds; what can fail is
    # the folders, so check that the message folders are there and writable.
    for key in ("data_folder_in", "data_folder_out"):
        folder = options.get(key)
        if not folder or not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise OSError(f"broker folder {key}={folder!r} is missing or not writable")


READINESS_CHECKS = (check_database, check_broker)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results = [check() for check in READINESS_CHECKS]
    ready = all(result.ok for result in results)
    if not ready:
        logger.warning("not ready: %s", "; ".join(f"{r.name}: {r.reason}" for r in results if not r.ok))
    return JsonResponse({"status": "ready" if ready else "not ready"}, status=200 if ready else 503)
