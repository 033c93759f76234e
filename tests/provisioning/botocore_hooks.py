"""Watching and steering the AWS calls the engine makes, at the botocore layer.

``AwsCallCounter`` counts every API call (one per operation, retries not
included) made by clients built from a boto3 session, grouped by phase.
``inject_error`` / ``inject_response`` make one operation answer as AWS would
in situations moto cannot produce (access denied, a principal not yet
visible, a failed connection test).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Any, Callable

from botocore.awsrequest import AWSResponse

# Operations that change AWS; everything else the engine calls only reads.
WRITE_PREFIXES = ("Create", "Put", "Update", "Delete", "Modify", "Tag", "Untag", "TestConnection")


def is_write(operation: str) -> bool:
    """True when ``operation`` changes state in AWS."""
    return operation.startswith(WRITE_PREFIXES)


class AwsCallCounter:
    """Counts API calls per phase, as ``service:Operation``, and apart the
    ones AWS refused (answered with an error).

    Register it on the base session *before* any client is built from it:
    botocore copies the session's event handlers into each new client.
    Steps make some calls from several threads at once: the counts are
    kept under a lock.
    """

    def __init__(self, session):
        self.phases: dict[str, Counter] = {}
        self.refusals: dict[str, Counter] = {}
        self.current = "setup"
        self._lock = threading.Lock()
        session.events.register("before-call", self._on_call)
        session.events.register("after-call", self._on_answer)

    def _on_call(self, model, **_: Any) -> None:
        with self._lock:
            self.phases.setdefault(self.current, Counter())[f"{model.service_model.service_name}:{model.name}"] += 1

    def _on_answer(self, model, http_response, parsed, **_: Any) -> None:
        if http_response.status_code >= 300 or "Error" in (parsed or {}):
            with self._lock:
                self.refusals.setdefault(self.current, Counter())[
                    f"{model.service_model.service_name}:{model.name}"
                ] += 1

    @contextlib.contextmanager
    def phase(self, name: str):
        """Count the calls made inside the block under ``name``."""
        previous, self.current = self.current, name
        self.phases.setdefault(name, Counter())
        try:
            yield self.phases[name]
        finally:
            self.current = previous

    def total(self, name: str) -> int:
        """All calls of phase ``name``."""
        return sum(self.phases.get(name, Counter()).values())

    def writes(self, name: str) -> dict[str, int]:
        """The state-changing calls of phase ``name`` that AWS accepted."""
        refused = self.refusals.get(name, Counter())
        written = {
            op: n - refused[op]
            for op, n in self.phases.get(name, Counter()).items()
            if is_write(op.split(":", 1)[1])
        }
        return {op: n for op, n in written.items() if n}

    def refused(self, name: str) -> dict[str, int]:
        """The calls of phase ``name`` that AWS answered with an error."""
        return dict(self.refusals.get(name, Counter()))

    def report(self) -> str:
        """One line per phase: total and the calls by operation."""
        lines = []
        for name, calls in self.phases.items():
            if name == "setup" and not calls:
                continue
            detail = ", ".join(f"{op}={n}" for op, n in sorted(calls.items()))
            lines.append(f"{name}: {sum(calls.values())} calls ({detail})")
        return "\n".join(lines)


def _fake_response(status: int, parsed: dict) -> tuple[AWSResponse, dict]:
    return AWSResponse(url="https://fake.invalid/", status_code=status, headers={}, raw=None), parsed


def inject_response(
    session,  # a boto3 session, or a client already built from it
    operation: str,
    answer: Callable[[dict], tuple[int, dict] | None],
) -> Callable[[], None]:
    """Make ``operation`` (e.g. ``"PutKeyPolicy"``) answer with ``answer(params)``
    for clients built from ``session`` afterwards; ``answer`` returning None
    lets the call through to moto. Returns a function that undoes it.
    """

    def handler(model, params, **_: Any):
        if model.name != operation:
            return None
        result = answer(params)
        if result is None:
            return None
        status, parsed = result
        parsed.setdefault("ResponseMetadata", {"RequestId": f"injected-{operation}", "HTTPStatusCode": status})
        return _fake_response(status, parsed)

    events = _events_of(session)
    events.register_last("before-call", handler)
    return lambda: events.unregister("before-call", handler)


def _events_of(target):
    # A client keeps its own copy of the session's handlers, taken when it
    # was built: steer a client already built through the client itself.
    return target.meta.events if hasattr(target, "meta") else target.events


def inject_error(session, operation: str, code: str, message: str, *, status: int = 400, times: int | None = None):
    """Make ``operation`` fail with AWS error ``code``/``message`` (``times``
    times, or always). Returns a function that undoes it."""
    remaining = [times]

    def answer(_params):
        if remaining[0] is not None:
            if remaining[0] <= 0:
                return None
            remaining[0] -= 1
        return status, {"Error": {"Code": code, "Message": message}}

    return inject_response(session, operation, answer)

