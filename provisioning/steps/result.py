"""What a step reports back to the workflow."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ContextManager

# ``lock(arn)`` serialises the read-merge-write of one shared policy across
# workers; the portal passes one, tests may not.
PolicyLock = Callable[[str], ContextManager[Any]]


@dataclass
class StepResult:
    """The outcome of one step run.

    ``before``/``after`` are the documents (or settings) as they were found
    and as the step left them; ``changed`` is False when nothing was written.
    """

    name: str
    changed: bool
    before: Any = None
    after: Any = None
    aws_request_ids: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # The calls behind ``aws_request_ids``, for a CloudTrail lookup
    # (``AwsCalls.calls``: request_id, event_source, event_name, region).
    aws_calls: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, as the workflow stores it."""
        return {
            "name": self.name,
            "changed": self.changed,
            "before": copy.deepcopy(self.before),
            "after": copy.deepcopy(self.after),
            "aws_request_ids": list(self.aws_request_ids),
            "outputs": copy.deepcopy(self.outputs),
        }


def locked(lock: PolicyLock | None, arn: str) -> ContextManager[Any]:
    """``lock(arn)``, or no lock when none was given."""
    return lock(arn) if lock is not None else contextlib.nullcontext()
