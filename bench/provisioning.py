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


def run(bench: Bench) -> dict:
    size = bench.size
    count = size.warmup_grants + size.provisioning_grants
    portal_grants = bench.admin.grants("prov-portal", count)
    specs = baseline_specs(bench, bench.admin.grants("prov-base", count))
    baseline = BaselineGrants(endpoint_url=bench.world.endpoint_url, region=bench.world.region)
    portal_seconds, baseline_seconds = [], []
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
    portal_median = statistics.median(portal_seconds)
    baseline_median = statistics.median(baseline_seconds)
    return {
        "provisioning_overhead_ratio": portal_median / baseline_median,
        "provisioning_portal_median_ms": portal_median * 1000,
        "provisioning_baseline_median_ms": baseline_median * 1000,
        "provisioning_grants": len(portal_seconds),
    }
