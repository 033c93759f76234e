"""AWS calls per grant, counted at the botocore layer, phase by phase.

The portal's grant runs in this process through the runner the workers
use, one step per call (``runner.run_step``) with the broker left out, so
each step's calls can be told apart. Filing (the web process) and the
worker get client factories of their own, as separate processes would.
The baseline's calls, counted the same way, are the minimum. The database
queries of the approval and of each step are counted too: with the trip
through the broker, they are what the portal adds to the AWS calls.

Two totals: the four writing steps' calls without AssumeRole (against the
baseline's writes), and the whole grant from approval to active with
AssumeRole (against the baseline's every call).
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from unittest import mock

import boto3
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.baseline import BaselineGrants
from bench.context import Bench, baseline_specs
from bench.filing import approve, submit
from provisioning.clients import ClientFactory
from provisioning.steps import table
from requests_app.aws import set_client_factory
from requests_app.models import RequestState
from requests_app.workflow import runner

ASSUME_ROLE = "sts:AssumeRole"
# The steps that change AWS, compared with the baseline's writes and their reads.
WRITING_STEPS = tuple(step.name for step in table.steps_of(table.GRANT) if step.writes)


class AwsCallCounter:
    """Counts API calls (``service:Operation``, retries not included) per
    phase, of every client built from ``session`` after it is registered
    (botocore copies a session's event handlers into each new client)."""

    def __init__(self, session: boto3.session.Session):
        self.phases: dict[str, Counter] = {}
        self.current = "setup"
        # Preflight and verify make their reads from several threads at once.
        self._lock = threading.Lock()
        session.events.register("before-call", self._on_call)

    def _on_call(self, model, **_) -> None:
        with self._lock:
            self.phases.setdefault(self.current, Counter())[f"{model.service_model.service_name}:{model.name}"] += 1

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Counter]:
        """Count the calls made inside the block under ``name``."""
        previous, self.current = self.current, name
        try:
            yield self.phases.setdefault(name, Counter())
        finally:
            self.current = previous


def _without_assume_role(calls: Counter) -> int:
    return sum(n for operation, n in calls.items() if operation != ASSUME_ROLE)


def _portal_calls(bench: Bench) -> tuple[AwsCallCounter, dict[str, int]]:
    """The AWS calls of one grant by phase, and its database queries by phase."""
    session = boto3.session.Session(region_name=bench.world.region)
    counter = AwsCallCounter(session)
    endpoint_url = bench.world.endpoint_url
    grant = bench.admin.grants("calls-portal", 1)[0]
    previous = set_client_factory(ClientFactory(base_session=session, endpoint_url=endpoint_url))
    try:
        with counter.phase("submit"):
            request = submit(bench, grant)
        set_client_factory(ClientFactory(base_session=session, endpoint_url=endpoint_url))
        queries: dict[str, int] = {}
        # No broker: the steps are run here, one by one.
        with mock.patch("requests_app.workflow.scheduling.enqueue_next_step"):
            with counter.phase("approve"), CaptureQueriesContext(connection) as captured:
                approve(bench, [request.pk])
            queries["approve"] = len(captured)
            for name in table.names(table.GRANT):
                with counter.phase(name), CaptureQueriesContext(connection) as captured:
                    ran = runner.run_step(request.pk, "grant")
                if ran != name:
                    raise RuntimeError(f"expected step {name} to run, got {ran}")
                queries[name] = len(captured)
    finally:
        set_client_factory(previous)
    request.refresh_from_db()
    if request.state != RequestState.ACTIVE:
        raise RuntimeError(f"the counted grant ended {request.state}: {request.diagnosis}")
    return counter, queries


def _baseline_calls(bench: Bench) -> Counter:
    session = boto3.session.Session(region_name=bench.world.region)
    counter = AwsCallCounter(session)
    spec = baseline_specs(bench, bench.admin.grants("calls-base", 1))[0]
    grants = BaselineGrants(endpoint_url=bench.world.endpoint_url, region=bench.world.region, session=session)
    with counter.phase("grant") as calls:
        grants.grant(spec)
    return calls


def run(bench: Bench) -> dict:
    bench.fresh_aws()
    counter, queries = _portal_calls(bench)
    baseline = _baseline_calls(bench)
    worker_phases = table.names(table.GRANT)
    by_phase = {name: sum(counter.phases[name].values()) for name in ("submit", "approve", *worker_phases)}
    # The whole grant, from approval to active, as the goal counts it.
    grant_total = sum(by_phase[name] for name in ("approve", *worker_phases))
    step_queries = [queries[name] for name in worker_phases]
    writing = sum(_without_assume_role(counter.phases[name]) for name in WRITING_STEPS)
    worker_assume = sum(counter.phases[name][ASSUME_ROLE] for name in worker_phases)
    minimum = _without_assume_role(baseline)
    return {
        "aws_calls_per_grant": writing,
        "aws_calls_minimum": minimum,
        "aws_calls_ratio": writing / minimum,
        "aws_calls_by_phase": by_phase,
        "aws_calls_worker_total": sum(by_phase[name] for name in worker_phases),
        "aws_calls_grant_total": grant_total,
        "aws_calls_baseline_total": sum(baseline.values()),
        "aws_calls_grant_ratio": grant_total / sum(baseline.values()),
        "aws_assume_role_per_account": worker_assume / 2,
        "aws_calls_detail": {name: dict(sorted(counter.phases[name].items()))
                             for name in ("submit", "approve", *worker_phases)},
        "db_queries_by_phase": queries,
        "db_queries_per_grant": sum(queries.values()),
        # Each step as the worker runs it: claimed, its own reads and writes, recorded.
        "db_queries_per_step_min": min(step_queries),
        "db_queries_per_step_max": max(step_queries),
        "db_queries_approve": queries["approve"],
    }
