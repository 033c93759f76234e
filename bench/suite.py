"""Running every benchmark in order, on one bench."""
from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence

from bench import audit, calls, pages, provisioning, throughput
from bench.context import Bench, open_bench
from bench.moto_server import DEFAULT_LATENCY_MS, describe_latency, parse_latency
from bench.sizes import MODELLED, Size


def at_each_latency(benchmark: Callable[[Bench], dict]) -> Callable[[Bench], dict]:
    """``benchmark`` run at 0 ms, then again at the modelled latency (its
    figures suffixed ``MODELLED``, at ``Size.modelled``), both sides against
    the same moto server."""

    def run(bench: Bench) -> dict:
        figures = benchmark(bench)
        size = bench.size
        bench.moto.set_latency(bench.latency)
        bench.size, bench.tag = size.modelled(), "lat-"
        try:
            figures.update({f"{key}{MODELLED}": value for key, value in benchmark(bench).items()})
        finally:
            bench.size, bench.tag = size, ""
            bench.moto.set_latency({})
        return figures

    run.__name__ = benchmark.__name__
    run.__module__ = benchmark.__module__
    return run


# Loading the pages' rows first means every later benchmark runs against a
# database of the size operators will have.
BENCHMARKS = (
    ("pages", pages.load),
    ("provisioning", at_each_latency(provisioning.run)),
    ("calls", calls.run),
    ("throughput", at_each_latency(throughput.run)),
    ("pages", pages.run),
    ("audit", audit.run),
)


def modelled_latency() -> dict[str, float]:
    """The modelled latency: BENCH_AWS_LATENCY_MS, or the default (see bench/LATENCY.md)."""
    return parse_latency(os.environ.get("BENCH_AWS_LATENCY_MS", DEFAULT_LATENCY_MS))


def run_all(size: Size, *, latency: Mapping[str, float] | None = None, only: Sequence[str] | None = None,
            progress: Callable[[str], None] = lambda line: None) -> dict:
    """Every figure (or those of the benchmarks named in ``only``), keyed by
    name, plus how and where they were measured.

    ``latency`` is the modelled AWS latency (ms by service, ``parse_latency``);
    by default ``modelled_latency()``.
    """
    latency = dict(modelled_latency() if latency is None else latency)
    started = time.monotonic()
    results: dict = {
        "size": size.name,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aws_latency_ms": latency,
        "aws_latency": describe_latency(latency),
    }
    seconds: dict[str, float] = {}
    with open_bench(size, latency=latency) as bench:
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
