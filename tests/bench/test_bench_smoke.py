"""The benchmarks run end to end at tiny size, so they cannot rot.

Real worker, broker, Postgres and moto server, as in ``make bench``; only
the sizes are tiny, and the modelled AWS latency a few milliseconds. Nothing
here judges the portal's timing: the figures must exist, be numbers that make
sense, and say that nothing was lost.
"""
from __future__ import annotations

import math

import pytest

from bench.baseline import BASELINE_OPERATIONS
from bench.moto_server import call_latency_ms, describe_latency
from bench.sizes import MODELLED, SIZES
from bench.suite import run_all

pytestmark = pytest.mark.django_db(transaction=True)

# Small, and different by service, so the runs at the modelled latency are
# exercised without making the smoke run slow.
SMOKE_LATENCY = {"iam": 8.0, "sts": 4.0, "secretsmanager": 3.0, "kms": 3.0, "dms": 10.0}
PAGES = ("approval_queue", "request_list_api", "request_detail", "audit_log")
RATIOS = (
    "provisioning_overhead_ratio",
    "aws_calls_ratio",
    "aws_calls_grant_ratio",
    "throughput_1w_ratio",
    "throughput_2w_ratio",
    "throughput_scaling",
    "throughput_baseline_scaling",
    "audit_append_ratio",
    "audit_verify_ratio",
    *(f"pages_{page}_{percentile}_ratio" for page in PAGES for percentile in ("p50", "p95")),
)
TIMINGS = (
    "provisioning_portal_median_ms",
    "provisioning_baseline_median_ms",
    "throughput_1w_grants_per_second",
    "throughput_1w_baseline_grants_per_second",
    "throughput_2w_grants_per_second",
    "throughput_2w_baseline_grants_per_second",
    "audit_append_ms_per_event",
    "audit_append_bare_ms_per_event",
    "audit_verify_seconds",
    *(f"pages_{page}_{kind}_ms" for page in PAGES for kind in ("p50", "p95", "bare_p50", "bare_p95")),
)
# Measured at 0 ms and again at the modelled latency.
AT_EACH_LATENCY = tuple(key for key in (*RATIOS, *TIMINGS) if key.startswith(("provisioning_", "throughput_")))


@pytest.fixture(scope="module")
def results(django_db_blocker, django_db_setup):
    """One tiny run for every assertion below (it takes a while even when tiny)."""
    with django_db_blocker.unblock():
        yield run_all(SIZES["tiny"], latency=SMOKE_LATENCY)


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_every_ratio_and_timing_is_reported_as_a_positive_number(results):
    keys = (*RATIOS, *TIMINGS, *(f"{key}{MODELLED}" for key in AT_EACH_LATENCY))
    missing = [key for key in keys if key not in results]
    assert not missing
    assert {key: results[key] for key in keys if not _positive_number(results[key])} == {}


def test_the_modelled_latency_is_waited_by_both_sides_and_reported(results):
    assert results["aws_latency"] == describe_latency(SMOKE_LATENCY)
    # The baseline makes its calls one after another: each waits its service's delay.
    waited = call_latency_ms(SMOKE_LATENCY, BASELINE_OPERATIONS)
    assert results[f"provisioning_baseline_median_ms{MODELLED}"] >= waited


def test_no_grant_is_lost_or_left_unfinished_under_concurrent_workers(results):
    for suffix in ("", MODELLED):
        assert results[f"throughput_lost_statements{suffix}"] == 0
        assert results[f"throughput_failed_grants{suffix}"] == 0


def test_the_grant_makes_the_writes_of_the_minimal_script_and_assumes_each_role_once(results):
    # The baseline's seven calls are the least a grant can make; the portal's
    # writing steps add only their reads: one before each write, and for each
    # policy one again right before its put and one after it (what narrows the
    # window for edits made outside the portal).
    assert results["aws_calls_minimum"] == 7
    assert results["aws_calls_minimum"] <= results["aws_calls_per_grant"] <= 13
    assert results["aws_assume_role_per_account"] == 1
    # The whole grant, approval to active, AssumeRole included.
    assert results["aws_calls_grant_total"] >= results["aws_calls_baseline_total"] == len(BASELINE_OPERATIONS)
    assert results["db_queries_per_step_min"] <= results["db_queries_per_step_max"]


def test_the_table_shows_every_goal_row(results):
    from bench.report import table

    text = table(results)
    for label in ("approval to active, at modelled latency", "approval to active, at 0 ms",
                  "1 worker process, at modelled latency", "2 worker processes, at modelled latency",
                  "AWS calls per grant, approval to active", "Queries to claim, run and record a step",
                  "Audit append"):
        assert label in text


def test_workers_assume_a_requests_roles_once_per_process_not_once_per_step(results):
    for suffix in ("", MODELLED):
        assert results[f"throughput_1w_assume_role_per_account{suffix}"] == 1
        assert 1 <= results[f"throughput_2w_assume_role_per_account{suffix}"] <= 2


def test_each_page_makes_as_many_queries_with_few_rows_as_with_many(results):
    for page in PAGES:
        assert results[f"pages_{page}_queries"] == results[f"pages_{page}_queries_small"], page
        assert results[f"pages_{page}_queries"] > 0


def test_the_loaded_and_appended_audit_chain_verifies_whole(results):
    assert results["audit_verify_ok"] is True
    tiny = SIZES["tiny"]
    appended = tiny.audit_writers * tiny.audit_events_per_writer
    assert results["audit_verify_events"] == results["audit_rows"]
    assert results["audit_verify_events"] >= tiny.audit_events_loaded + appended
