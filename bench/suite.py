"""Running every benchmark in order, on one bench."""
from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable, Sequence

from bench import audit, calls, pages, provisioning, throughput
from bench.context import open_bench
from bench.sizes import Size

# Loading the pages' rows first means every later benchmark runs against a
# database of the size operators will have.
BENCHMARKS = (
    ("pages", pages.load),
    ("provisioning", provisioning.run),
    ("calls", calls.run),
    ("throughput", throughput.run),
    ("pages", pages.run),
    ("audit", audit.run),
)


def run_all(size: Size, *, only: Sequence[str] | None = None, progress: Callable[[str], None] = lambda line: None) -> dict:
    """Every figure (or those of the benchmarks named in ``only``), keyed by
    name, plus how and where they were measured."""
    started = time.monotonic()
    results: dict = {
        "size": size.name,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    seconds: dict[str, float] = {}
    with open_bench(size) as bench:
        for name, benchmark in BENCHMARKS:
            if only and name not in only:
                continue
            progress(f"bench: {benchmark.__module__}.{benchmark.__name__} ...")
            began = time.monotonic()
            results.update(benchmark(bench))
            seconds[f"{name}.{benchmark.__name__}"] = round(time.monotonic() - began, 1)
    results["seconds_by_benchmark"] = seconds
    results["seconds_total"] = round(time.monotonic() - started, 1)
    return results
