"""Provisioning overhead: approval to active through the real worker and
broker, against the baseline script making the same grant directly.

Grants are timed one at a time, alternating portal and baseline so that both
see the same moments of a shared, noisy machine. The portal's time runs from
just before the approval is recorded to the ``completed_at`` the worker
stamps when the request turns active (same machine, same clock), so waiting
for the benchmark's own polling is not counted.
"""
from __future__ import annotations

import statistics
import time

from bench.baseline import BaselineGrants, timed_grants
from bench.context import Bench, baseline_specs
from bench.filing import approve, submit, wait_until_done
from provisioning.steps import table
from requests_app.models import ProvisioningStep


def run(bench: Bench) -> dict:
    size = bench.size
    count = size.warmup_grants + size.provisioning_grants
    bench.fresh_aws()
    portal_grants = bench.admin.grants("prov-portal", count)
    specs = baseline_specs(bench, bench.admin.grants("prov-base", count))
    baseline = BaselineGrants(endpoint_url=bench.world.endpoint_url, region=bench.world.region)
    portal_seconds, baseline_seconds, measured = [], [], []
    bench.workers(1)
    for index in range(count):
        request = submit(bench, portal_grants[index])
        started = time.time()
        approve(bench, [request.pk])
        finished = wait_until_done([request.pk], timeout=size.grant_timeout)
        if finished.not_active:
            raise RuntimeError(f"request {request.pk} did not become active")
        portal = finished.active[request.pk] - started
        base = timed_grants(baseline, [specs[index]])[0]
        if index >= size.warmup_grants:
            portal_seconds.append(portal)
            baseline_seconds.append(base)
            measured.append(request.pk)
    portal_median = statistics.median(portal_seconds)
    baseline_median = statistics.median(baseline_seconds)
    return {
        "provisioning_overhead_ratio": portal_median / baseline_median,
        "provisioning_portal_median_ms": portal_median * 1000,
        "provisioning_baseline_median_ms": baseline_median * 1000,
        "provisioning_grants": len(portal_seconds),
        **_where_the_time_goes(measured, portal_median),
    }


def _where_the_time_goes(request_ids: list[int], portal_median: float) -> dict:
    """Median milliseconds of each step (claimed to recorded, as the step rows
    say), of the graph's longest chain of them, and what the median grant
    spent outside that chain: approval, the trip through the broker, claiming
    and recording."""
    durations: dict[str, list[float]] = {}
    rows = ProvisioningStep.objects.filter(request_id__in=request_ids, phase="grant").values_list(
        "name", "started_at", "finished_at")
    for name, started, finished in rows:
        durations.setdefault(name, []).append((finished - started).total_seconds())
    steps = {name: statistics.median(values) * 1000 for name, values in durations.items()}
    # Steps side by side overlap: the grant waits for the longest chain of
    # its graph, not for the sum of its steps.
    finished: dict[str, float] = {}
    for step in table.steps_of(table.GRANT):
        finished[step.name] = steps.get(step.name, 0.0) + max((finished[name] for name in step.after), default=0.0)
    critical_path = max(finished.values(), default=0.0)
    return {
        "provisioning_portal_step_ms": steps,
        "provisioning_portal_critical_path_ms": critical_path,
        "provisioning_portal_outside_steps_ms": portal_median * 1000 - critical_path,
    }
