"""Throughput and scaling: a burst of approvals through 1 and 2 worker
processes, against the baseline script run in as many parallel processes.
Each of the four runs starts from an empty moto (``Bench.fresh_aws``).

The portal's run: every request is filed first (untimed; shaped like a
filed one, see ``filing.file_like``), then all are approved in one transaction, so the broker gets every first step at the
commit; the clock runs from just before that commit to the last
``completed_at``. The baseline's run: each process takes whole groups of
grants (no two processes touch one secret or key, since the baseline has no
lock), warms up, waits at a barrier, and makes its grants; the clock runs
from the first start to the last end. Afterwards every portal grant's
statement is looked up in its secret and key policy (none may be lost), and
moto's record of AssumeRole calls tells how often each worker process
assumed a request's roles: at most once per account per process, never per
step.
"""
from __future__ import annotations

import time

from django.db import transaction

from bench.baseline import share_process
from bench.context import Bench, baseline_specs
from bench.filing import approve, file_like, submit, wait_until_done
from bench.workers import forked_context
from bench.world import GRANTS_PER_TARGET, assume_role_calls, lost_statements
from requests_app.grants import grant_spec_for


def _portal_run(bench: Bench, processes: int) -> tuple[float, int, int, float]:
    """(grants per second, lost statements, grants not active when the wait
    ended, AssumeRole calls per account per request)."""
    size = bench.size
    bench.fresh_aws()
    grants = bench.admin.grants(f"tput{processes}-portal", size.throughput_grants)
    warmup = [submit(bench, grant) for grant in bench.admin.grants(f"tput{processes}-warm", processes * size.warmup_grants)]
    requests = file_like(warmup[0], grants)
    ids = [request.pk for request in requests]
    bench.workers(processes)
    approve(bench, [request.pk for request in warmup])
    wait_until_done([request.pk for request in warmup], timeout=size.grant_timeout)
    with transaction.atomic():
        approve(bench, ids)
        started = time.time()
    finished = wait_until_done(ids, timeout=size.grant_timeout, poll=0.2)
    elapsed = finished.last_completion() - started
    specs = [grant_spec_for(request) for request in requests]
    assumed = assume_role_calls(bench.world.endpoint_url, [spec.session_name for spec in specs])
    expected = [(grant.target, spec.statement_sid) for grant, spec in zip(grants, specs)]
    lost = lost_statements(bench.admin, [pair for pair, request in zip(expected, requests) if request.pk in finished.active])
    rate = len(finished.active) / elapsed if elapsed > 0 else 0.0
    # Two accounts per request: the DataLake and the Remote one.
    return rate, lost, len(finished.not_active), assumed / (2 * len(requests))


def _baseline_run(bench: Bench, processes: int) -> float:
    """Grants per second of the baseline in ``processes`` parallel processes."""
    size = bench.size
    bench.fresh_aws()
    specs = baseline_specs(bench, bench.admin.grants(f"tput{processes}-base", size.throughput_grants))
    warmup = baseline_specs(bench, bench.admin.grants(f"tput{processes}-bwarm", processes * size.warmup_grants))
    shares = [[spec for index, spec in enumerate(specs) if (index // GRANTS_PER_TARGET) % processes == share]
              for share in range(processes)]
    context = forked_context()
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(
            target=share_process,
            args=(bench.world.endpoint_url, bench.world.region, warmup[share::processes], shares[share], barrier, results),
        )
        for share in range(processes)
    ]
    for child in children:
        child.start()
    spans = [results.get(timeout=size.grant_timeout) for _ in children]
    for child in children:
        child.join()
    if any(child.exitcode != 0 for child in children) or any(isinstance(span, str) for span in spans):
        raise RuntimeError(f"a baseline process failed: {spans}")
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return len(specs) / elapsed


def run(bench: Bench) -> dict:
    figures: dict = {"throughput_grants": bench.size.throughput_grants}
    lost = failed = 0
    for processes in bench.size.throughput_workers:
        portal, run_lost, run_failed, assumed = _portal_run(bench, processes)
        baseline = _baseline_run(bench, processes)
        lost += run_lost
        failed += run_failed
        figures[f"throughput_{processes}w_grants_per_second"] = portal
        figures[f"throughput_{processes}w_baseline_grants_per_second"] = baseline
        figures[f"throughput_{processes}w_ratio"] = portal / baseline
        figures[f"throughput_{processes}w_assume_role_per_account"] = assumed
    if {1, 2} <= set(bench.size.throughput_workers):
        figures["throughput_scaling"] = figures["throughput_2w_grants_per_second"] / figures["throughput_1w_grants_per_second"]
        figures["throughput_baseline_scaling"] = (
            figures["throughput_2w_baseline_grants_per_second"] / figures["throughput_1w_baseline_grants_per_second"]
        )
    bench.stop_workers()
    figures["throughput_lost_statements"] = lost
    figures["throughput_failed_grants"] = failed
    return figures
