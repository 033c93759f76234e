"""Faults the integration tests inject into real worker processes.

Workers started by the harness import this module (``celery worker -I``). It
wraps each engine step; a step misbehaves only for a request the test named
in ``$PORTAL_TEST_FAULTS_DIR/<request id>.json``:

    {"<step name>": {"retryable": N}}        raise RetryableAwsError on attempts 1..N
    {"<step name>": {"permanent": "<code>"}} raise PermanentAwsError every time
    {"<step name>": {"sleep_after": S}}      on attempt 1, do the step, then sleep S
                                             seconds before its result is recorded
    {"<step name>": {"sleep_before": S}}     on attempt 1, sleep S seconds after the
                                             claim, then do the step

While it sleeps, ``<request id>.<step name>.sleeping`` holds the pool
process's pid and its worker's (parent's) pid; it is written once the
request's other running steps (run side by side with this one) are recorded.

Attempts are counted by the workflow itself (the step row), so the count
holds across worker processes and Celery retries.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from provisioning.errors import PermanentAwsError, RetryableAwsError
from requests_app.models import ProvisioningStep
from requests_app.workflow import runner

FAULTS_DIR = Path(os.environ.get("PORTAL_TEST_FAULTS_DIR", "/nonexistent"))
_engine_step = runner.engine_step


def fault_for(grant_id: str, name: str) -> dict | None:
    path = FAULTS_DIR / f"{grant_id}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(name)


def sleeping_marker(grant_id: str, name: str) -> Path:
    return FAULTS_DIR / f"{grant_id}.{name}.sleeping"


def _sleep(grant_id: str, phase: str, name: str, seconds: float) -> None:
    _wait_for_siblings(grant_id, phase, name)
    sleeping_marker(grant_id, name).write_text(json.dumps({"pid": os.getpid(), "ppid": os.getppid()}))
    time.sleep(seconds)


def _wait_for_siblings(grant_id: str, phase: str, name: str, timeout: float = 30) -> None:
    """Until the steps running beside this one (independent steps run side by
    side) are recorded: a test that pauses or kills the worker at the marker
    then stops this step alone, as it means to."""
    deadline = time.monotonic() + timeout
    others = ProvisioningStep.objects.filter(request_id=int(grant_id), phase=phase, status="running").exclude(name=name)
    while others.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def faulty_engine_step(phase: str, name: str):
    step = _engine_step(phase, name)

    def run(spec, **kwargs):
        fault = fault_for(spec.grant_id, name)
        if fault is None:
            return step(spec, **kwargs)
        attempt = ProvisioningStep.objects.get(request_id=int(spec.grant_id), phase=phase, name=name).attempts
        if attempt <= fault.get("retryable", 0):
            raise RetryableAwsError(
                f"injected: {name} attempt {attempt} not yet visible", diagnosis="principal_not_visible"
            )
        if "permanent" in fault:
            raise PermanentAwsError(f"injected: {name} refused", diagnosis=fault["permanent"])
        if attempt == 1 and "sleep_before" in fault:
            _sleep(spec.grant_id, phase, name, fault["sleep_before"])
        result = step(spec, **kwargs)
        if attempt == 1 and "sleep_after" in fault:
            _sleep(spec.grant_id, phase, name, fault["sleep_after"])
        return result

    return run


if FAULTS_DIR.is_dir():
    runner.engine_step = faulty_engine_step
