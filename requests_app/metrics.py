"""Prometheus metrics: what the portal holds, and how provisioning goes.

Two kinds of numbers:
- counts that live in the database (requests per state, how long the oldest
  approved request has waited for a worker) are queried when Prometheus
  scrapes, so every web process reports the same truth and nothing drifts;
- step durations and failures happen in the workers and are recorded by the
  step runner through ``observe_step``. With several processes on a host (the
  Celery pool, gunicorn workers) set ``PROMETHEUS_MULTIPROC_DIR`` so they add
  up; a worker host of its own serves them on ``WORKER_METRICS_PORT``.
"""
from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from provisioning.drift import DRIFT_KINDS
from requests_app.models import AccessRequest, AuditChainState, RequestState

logger = logging.getLogger(__name__)

# Steps range from one AWS read (milliseconds) to a connection test that polls
# DMS for minutes.
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# Metrics this process records. Not the library's global registry, so a scrape
# shows exactly the portal's metrics.
_process_registry = CollectorRegistry()

STEP_DURATION = Histogram(
    "portal_step_duration_seconds",
    "Time one provisioning step took, by step and outcome.",
    ["step", "outcome"],
    buckets=STEP_BUCKETS,
    registry=_process_registry,
)
STEP_FAILURES = Counter(
    "portal_step_failures",
    "Provisioning steps that failed, by step and diagnosis.",
    ["step", "diagnosis"],
    registry=_process_registry,
)


def observe_step(name: str, seconds: float, ok: bool, *, diagnosis: str = "") -> None:
    """Record one run of step ``name``: its duration and, if it failed, a failure."""
    outcome = "succeeded" if ok else "failed"
    STEP_DURATION.labels(step=name, outcome=outcome).observe(max(seconds, 0.0))
    if not ok:
        STEP_FAILURES.labels(step=name, diagnosis=diagnosis or "unknown").inc()


class PortalStateCollector:
    """Request counts per state and the provisioning queue's age, read from
    the database at scrape time."""

    def collect(self):
        database_up = GaugeMetricFamily("portal_database_up", "1 if the last scrape could read the database.")
        try:
            by_state = {
                row["state"]: row["n"]
                for row in AccessRequest.objects.order_by().values("state").annotate(n=Count("id"))
            }
            # Approved and waiting for a worker to start; the approval time is
            # when it joined the queue.
            oldest = (
                AccessRequest.objects.filter(state=RequestState.APPROVED)
                .aggregate(oldest=Min(Coalesce("decided_at", "updated_at")))
                .get("oldest")
            )
        except DatabaseError:
            logger.warning("metrics: cannot read the database", exc_info=True)
            database_up.add_metric([], 0)
            yield database_up
            return
        database_up.add_metric([], 1)
        yield database_up

        requests = GaugeMetricFamily("portal_requests", "Access requests by state.", labels=["state"])
        for state in RequestState.values:
            requests.add_metric([state], by_state.get(state, 0))
        yield requests

        queue_age = GaugeMetricFamily(
            "portal_provisioning_queue_age_seconds",
            "Age of the oldest approved request whose provisioning has not started (0 if none).",
        )
        queue_age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield queue_age


class GrantDriftCollector:
    """Active grants that no longer match their plan in AWS, from the latest
    drift check stored on each request, read at scrape time."""

    def collect(self):
        try:
            reports = list(
                AccessRequest.objects.filter(state=RequestState.ACTIVE, drift__drifted=True).values_list(
                    "drift", flat=True
                )
            )
        except DatabaseError:
            logger.warning("metrics: cannot read drift from the database", exc_info=True)
            return
        drifted = GaugeMetricFamily("portal_grants_drifted", "Active grants whose latest drift check found differences.")
        drifted.add_metric([], len(reports))
        yield drifted
        by_kind = GaugeMetricFamily(
            "portal_grant_drift_findings", "Active grants with a drift finding of each kind.", labels=["kind"]
        )
        for kind in DRIFT_KINDS:
            by_kind.add_metric([kind], sum(1 for report in reports if kind in (report or {}).get("kinds", [])))
        yield by_kind


class AuditChainCollector:
    """How far the audit chain has been verified, and whether it held, from
    the state the periodic verification keeps in the database."""

    def collect(self):
        try:
            state = AuditChainState.objects.order_by("id").first()
        except DatabaseError:
            logger.warning("metrics: cannot read the audit chain state", exc_info=True)
            return
        through = GaugeMetricFamily(
            "portal_audit_chain_verified_through", "Id of the newest audit event the chain has been verified through."
        )
        through.add_metric([], state.verified_through_id if state else 0)
        yield through
        if state is not None and state.ok is not None:
            ok = GaugeMetricFamily("portal_audit_chain_ok", "1 if the audit chain verified at the last check, 0 if not.")
            ok.add_metric([], 1 if state.ok else 0)
            yield ok
            checked = GaugeMetricFamily(
                "portal_audit_chain_checked_timestamp_seconds", "When the audit chain was last verified (Unix time)."
            )
            checked.add_metric([], state.checked_at.timestamp())
            yield checked


def _step_metrics_collector(registry: CollectorRegistry) -> None:
    if settings.PROMETHEUS_MULTIPROC_DIR:
        MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        registry.register(_process_registry)


def scrape_registry() -> CollectorRegistry:
    """A registry holding everything /metrics shows."""
    registry = CollectorRegistry()
    registry.register(PortalStateCollector())
    registry.register(GrantDriftCollector())
    registry.register(AuditChainCollector())
    _step_metrics_collector(registry)
    return registry


def _scraper_allowed(request: HttpRequest) -> bool:
    """With METRICS_TOKEN set, only ``Authorization: Bearer <METRICS_TOKEN>`` may scrape."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Compared in constant time, so the answer's timing tells nothing about the token.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition (OpenMetrics when the scraper asks for it)."""
    if not _scraper_allowed(request):
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(scrape_registry()), content_type=content_type)


def serve_worker_metrics(port: int) -> None:
    """Serve this host's step metrics on ``port`` (a worker has no web server)."""
    registry = CollectorRegistry()
    _step_metrics_collector(registry)
    start_http_server(port, registry=registry)
    logger.info("worker metrics on port %s (multiprocess: %s)", port, bool(settings.PROMETHEUS_MULTIPROC_DIR))
