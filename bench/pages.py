"""Pages and API at size: the approval queue, the request list API, a
request detail page and the audit log page, each against a bare view
returning the same page of rows from the same tables (``bench.bare_views``).

``load`` fills the database first (every later benchmark then runs on a
portal of that size): one request filed for real through the services is
the template of the loaded ones. The query count of each page is taken once
after a small first batch (``load``) and again at full size (``run``): it
must not grow with the rows. ``run`` times the pages through Django's test
client as the approver (who sees every loaded request), portal and bare
view interleaved, after a warm-up.

With ``BENCH_PROFILE=1`` ``run`` then profiles each portal page with
cProfile over as many requests as it timed, and writes the functions that
cost most (by own time and by cumulative time) to ``bench/profiles/<page>.txt``;
the timings are taken before, without the profiler.
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import statistics
import time
from pathlib import Path

import django
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from bench import dataset
from bench.context import Bench
from bench.filing import submit
from requests_app.models import AccessRequest, RequestState

WARMUP_ROUNDS = 3
PROFILE_DIRECTORY = Path(__file__).resolve().parent / "profiles"
PROJECT_ROOT = str(PROFILE_DIRECTORY.parent.parent)
LIBRARIES = str(Path(django.__file__).resolve().parent.parent)
PROFILE_ROWS = 40
PAGES = ("approval_queue", "request_list_api", "request_detail", "audit_log")


def _paths(detail_id: int) -> dict[str, tuple[str, str]]:
    """page -> (portal path, bare path)."""
    return {
        "approval_queue": ("/approvals/", "/bench/bare/approvals/"),
        "request_list_api": ("/api/v1/requests/", "/bench/bare/requests/"),
        "request_detail": (f"/requests/{detail_id}/", f"/bench/bare/requests/{detail_id}/"),
        "audit_log": ("/audit/", "/bench/bare/audit/"),
    }


def _client(bench: Bench) -> Client:
    client = Client()
    client.force_login(bench.approver)
    return client


def _served():
    return override_settings(ROOT_URLCONF="bench.urls", ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"])


def _get(client: Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}")
    return elapsed


def _query_counts(bench: Bench, detail_id: int) -> dict[str, int]:
    counts = {}
    with _served():
        client = _client(bench)
        for page, (path, _) in _paths(detail_id).items():
            client.get(path)  # sessions, caches: the count is of a warm page
            with CaptureQueriesContext(connection) as queries:
                _get(client, path)
            counts[page] = len(queries)
    return counts


def _granted_ids(limit: int) -> list[int]:
    return list(
        AccessRequest.objects.filter(state=RequestState.ACTIVE, endpoint_identifier__startswith="hist-")
        .order_by("?").values_list("pk", flat=True)[:limit]
    )


def load(bench: Bench) -> dict:
    size = bench.size
    started = time.monotonic()
    template = submit(bench, bench.admin.grants("pages-template", 1)[0])
    per_request = max(1, size.audit_events_loaded // size.requests_loaded)
    first_batch = max(20, size.requests_loaded // 100)
    people = {
        "requester_id": bench.requester.pk, "approver_id": bench.approver.pk,
        "requester_label": bench.requester.get_username(), "approver_label": bench.approver.get_username(),
    }
    figures: dict = {}
    # A small first batch, then the page query counts; then the rest at once.
    for first, count in ((0, min(first_batch, size.requests_loaded)),
                         (first_batch, size.requests_loaded - first_batch)):
        if count <= 0:
            continue
        dataset.load_batch(template, first=first, count=count, total=size.requests_loaded,
                           events_per_request=per_request, bulk=first > 0, **people)
        if first == 0:
            dataset.analyze()
            small = _query_counts(bench, _granted_ids(1)[0])
            figures.update({f"pages_{page}_queries_small": n for page, n in small.items()})
    dataset.analyze()
    figures.update({
        "pages_requests_loaded": size.requests_loaded,
        "pages_audit_events_loaded": per_request * size.requests_loaded,
        "pages_load_seconds": time.monotonic() - started,
    })
    return figures


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _profile(bench: Bench, detail_ids: list[int], samples: int) -> list[Path]:
    """Each portal page requested ``samples`` times under cProfile; one report a page."""
    PROFILE_DIRECTORY.mkdir(exist_ok=True)
    written = []
    with _served():
        client = _client(bench)
        for page in PAGES:
            profiler = cProfile.Profile()
            for round_number in range(samples):
                path = _paths(detail_ids[round_number % len(detail_ids)])[page][0]
                profiler.enable()
                _get(client, path)
                profiler.disable()
            report = io.StringIO()
            report.write(f"{page}: {samples} requests of {_paths(detail_ids[0])[page][0]} (size {bench.size.name})\n")
            stats = pstats.Stats(profiler, stream=report)
            for order in ("tottime", "cumulative"):
                report.write(f"\n--- by {order} ---\n")
                stats.sort_stats(order).print_stats(PROFILE_ROWS)
            report.write("\n--- the portal's own code, by cumulative ---\n")
            stats.sort_stats("cumulative").print_stats(f"^{PROJECT_ROOT}/(?!bench/)", PROFILE_ROWS)
            path = PROFILE_DIRECTORY / f"{page}.txt"
            path.write_text(report.getvalue().replace(f"{PROJECT_ROOT}/", "").replace(f"{LIBRARIES}/", ""))
            written.append(path)
    return written


def run(bench: Bench) -> dict:
    samples = bench.size.page_samples
    detail_ids = _granted_ids(samples + WARMUP_ROUNDS)
    times = {page: {"portal": [], "bare": []} for page in PAGES}
    with _served():
        client = _client(bench)
        for round_number in range(WARMUP_ROUNDS + samples):
            detail_id = detail_ids[round_number % len(detail_ids)]
            for page, (portal_path, bare_path) in _paths(detail_id).items():
                portal, bare = _get(client, portal_path), _get(client, bare_path)
                if round_number >= WARMUP_ROUNDS:
                    times[page]["portal"].append(portal)
                    times[page]["bare"].append(bare)
    counts = _query_counts(bench, detail_ids[0])
    figures: dict = {}
    for page in PAGES:
        portal, bare = times[page]["portal"], times[page]["bare"]
        p50, p95 = statistics.median(portal), _percentile(portal, 0.95)
        bare_p50, bare_p95 = statistics.median(bare), _percentile(bare, 0.95)
        figures.update({
            f"pages_{page}_p50_ms": p50 * 1000,
            f"pages_{page}_p95_ms": p95 * 1000,
            f"pages_{page}_bare_p50_ms": bare_p50 * 1000,
            f"pages_{page}_bare_p95_ms": bare_p95 * 1000,
            f"pages_{page}_p50_ratio": p50 / bare_p50,
            f"pages_{page}_p95_ratio": p95 / bare_p95,
            f"pages_{page}_queries": counts[page],
        })
    figures["pages_samples"] = samples
    if os.environ.get("BENCH_PROFILE") == "1":
        figures["pages_profiles"] = [str(path) for path in _profile(bench, detail_ids, samples)]
    return figures
