"""The results table printed after a run."""
from __future__ import annotations

from bench.sizes import MODELLED

# (label, figure key, baseline key, ratio key, goal); the portal's and the
# baseline's figures share the unit named in the label. "modelled latency" rows
# were measured at the modelled AWS latency (suffix ``MODELLED``), the others
# at 0 ms, both sides against the same moto server.
ROWS = (
    ("Provisioning, approval to active, at modelled latency (ms, median)", f"provisioning_portal_median_ms{MODELLED}",
     f"provisioning_baseline_median_ms{MODELLED}", f"provisioning_overhead_ratio{MODELLED}", "≤ 1.0"),
    ("Provisioning, approval to active, at 0 ms (ms, median)", "provisioning_portal_median_ms",
     "provisioning_baseline_median_ms", "provisioning_overhead_ratio", "≤ 1.5"),
    ("Throughput, 1 worker process, at modelled latency (grants/s)", f"throughput_1w_grants_per_second{MODELLED}",
     f"throughput_1w_baseline_grants_per_second{MODELLED}", f"throughput_1w_ratio{MODELLED}", "≥ 0.7"),
    ("Throughput, 2 worker processes, at modelled latency (grants/s)", f"throughput_2w_grants_per_second{MODELLED}",
     f"throughput_2w_baseline_grants_per_second{MODELLED}", f"throughput_2w_ratio{MODELLED}", "≥ 0.7"),
    ("Throughput, 1 worker process, at 0 ms (grants/s)", "throughput_1w_grants_per_second",
     "throughput_1w_baseline_grants_per_second", "throughput_1w_ratio", ""),
    ("Throughput, 2 worker processes, at 0 ms (grants/s)", "throughput_2w_grants_per_second",
     "throughput_2w_baseline_grants_per_second", "throughput_2w_ratio", ""),
    ("AWS calls per grant, approval to active, AssumeRole included", "aws_calls_grant_total",
     "aws_calls_baseline_total", "aws_calls_grant_ratio", "≤ 16 calls"),
    ("Queries to claim, run and record a step (most of any step)", "db_queries_per_step_max", None, None, "≤ 6"),
    ("Queries to approve", "db_queries_approve", None, None, "≤ 10"),
    ("Approval queue p50 (ms)", "pages_approval_queue_p50_ms", "pages_approval_queue_bare_p50_ms",
     "pages_approval_queue_p50_ratio", "≤ 2"),
    ("Approval queue p95 (ms)", "pages_approval_queue_p95_ms", "pages_approval_queue_bare_p95_ms",
     "pages_approval_queue_p95_ratio", "≤ 2"),
    ("Request list API p50 (ms)", "pages_request_list_api_p50_ms", "pages_request_list_api_bare_p50_ms",
     "pages_request_list_api_p50_ratio", "≤ 2"),
    ("Request list API p95 (ms)", "pages_request_list_api_p95_ms", "pages_request_list_api_bare_p95_ms",
     "pages_request_list_api_p95_ratio", "≤ 2"),
    ("Request detail p50 (ms)", "pages_request_detail_p50_ms", "pages_request_detail_bare_p50_ms",
     "pages_request_detail_p50_ratio", "≤ 2"),
    ("Request detail p95 (ms)", "pages_request_detail_p95_ms", "pages_request_detail_bare_p95_ms",
     "pages_request_detail_p95_ratio", "≤ 2"),
    ("Audit log p50 (ms)", "pages_audit_log_p50_ms", "pages_audit_log_bare_p50_ms", "pages_audit_log_p50_ratio", "≤ 2"),
    ("Audit log p95 (ms)", "pages_audit_log_p95_ms", "pages_audit_log_bare_p95_ms", "pages_audit_log_p95_ratio", "≤ 2"),
    ("Audit append, {audit_append_writers} writers (ms per event)", "audit_append_ms_per_event", "audit_append_bare_ms_per_event",
     "audit_append_ratio", "≤ 3"),
    ("AWS calls, create_role..create_endpoint", "aws_calls_per_grant", "aws_calls_minimum", "aws_calls_ratio", ""),
    ("AssumeRole per account per request (one process)", "aws_assume_role_per_account", None, None, "1"),
    ("AssumeRole per account per request (2 worker processes)", "throughput_2w_assume_role_per_account", None, None,
     "≤ 2"),
    ("Scaling 1 → 2 processes, at modelled latency (portal vs baseline)", f"throughput_scaling{MODELLED}",
     f"throughput_baseline_scaling{MODELLED}", None, ""),
    ("Scaling 1 → 2 processes, at 0 ms (portal vs baseline)", "throughput_scaling", "throughput_baseline_scaling", None, ""),
    ("Lost statements / failed grants", "throughput_lost_statements", None, None, "0"),
    ("Audit verify, whole chain (s)", "audit_verify_seconds", "audit_verify_bare_scan_seconds", "audit_verify_ratio", ""),
)
QUERY_PAGES = ("approval_queue", "request_list_api", "request_detail", "audit_log")


def _number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def table(results: dict) -> str:
    """A Markdown table of the figures (the README shows the latest one)."""
    lines = [
        f"Size {results.get('size')}, {results.get('cpus')} CPUs, measured {results.get('measured_at')}, "
        f"{results.get('seconds_total', 0):.0f} s in all. Modelled AWS latency (ms a call, by service): "
        f"{results.get('aws_latency', '0')}.",
        "",
        "| figure | portal | baseline | ratio | goal |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for label, key, baseline_key, ratio_key, goal in ROWS:
        if key not in results:
            continue
        value = results[key]
        if key == "throughput_lost_statements":
            lost = results[key] + results.get(f"{key}{MODELLED}", 0)
            failed = results.get("throughput_failed_grants", 0) + results.get(f"throughput_failed_grants{MODELLED}", 0)
            value = f"{lost} / {failed}"
        elif key == "db_queries_per_step_max":
            value = f"{results['db_queries_per_step_min']}–{value}"
        else:
            value = _number(value)
        baseline = _number(results.get(baseline_key)) if baseline_key else ""
        ratio = _number(results.get(ratio_key)) if ratio_key else ""
        lines.append(f"| {label.format(**results)} | {value} | {baseline} | {ratio} | {goal} |")
    lines += ["", "| page | queries, small | queries, full |", "| --- | ---: | ---: |"]
    for page in QUERY_PAGES:
        if f"pages_{page}_queries" in results:
            lines.append(f"| {page} | {results.get(f'pages_{page}_queries_small', '–')} | {results[f'pages_{page}_queries']} |")
    if "aws_calls_by_phase" in results:
        phases = ", ".join(f"{name} {n}" for name, n in results["aws_calls_by_phase"].items())
        lines += ["", f"AWS calls by phase (portal, AssumeRole included): {phases}; the baseline makes "
                      f"{results['aws_calls_baseline_total']} in all."]
    if "db_queries_by_phase" in results:
        phases = ", ".join(f"{name} {n}" for name, n in results["db_queries_by_phase"].items())
        lines += ["", f"Database queries of one grant: {results['db_queries_per_grant']} ({phases})."]
    for suffix, latency in ((MODELLED, "the modelled latency"), ("", "0 ms")):
        if f"provisioning_portal_step_ms{suffix}" in results:
            steps = ", ".join(f"{name} {ms:.0f}" for name, ms in results[f"provisioning_portal_step_ms{suffix}"].items())
            outside = results[f"provisioning_portal_outside_steps_ms{suffix}"]
            critical = results[f"provisioning_portal_critical_path_ms{suffix}"]
            lines += ["", f"Median portal grant by step at {latency} (ms, claimed to recorded): {steps}; the longest "
                          f"chain of the step graph: {critical:.0f}; outside it (approval, the broker, claiming, "
                          f"recording): {outside:.0f}."]
    if "audit_verify_events" in results:
        lines.append("")
        lines.append(
            f"Chain verified: {_number(results['audit_verify_ok'])}, {results['audit_verify_events']:,} events "
            f"({results['audit_verify_events_per_second']:,.0f} events/s); "
            f"loaded {results.get('pages_requests_loaded', 0):,} requests and "
            f"{results.get('pages_audit_events_loaded', 0):,} audit events in {results.get('pages_load_seconds', 0):.0f} s."
        )
    return "\n".join(lines)
