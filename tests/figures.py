"""Figures the reliability and security tests measure, reported after the run.

A test asks for the ``figures`` fixture and records what it measured
(requests, faults injected, outcomes, AWS call counts, seconds). The figures
are printed at the end of the run and written to
``test-output/figures.json``, so a person reads what was proven, not only
that the tests passed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "figures.json"
_recorded: dict[str, dict] = {}


class Figures:
    """The figures of one test."""

    def __init__(self, test_id: str):
        self.test_id = test_id

    def record(self, **values) -> None:
        """Add ``values`` (JSON-serialisable) to this test's figures."""
        _recorded.setdefault(self.test_id, {}).update(values)


@pytest.fixture
def figures(request) -> Figures:
    return Figures(request.node.nodeid)


def pytest_terminal_summary(terminalreporter):
    if not _recorded:
        return
    terminalreporter.section("measured figures")
    for test_id, values in _recorded.items():
        terminalreporter.write_line(test_id)
        line = ", ".join(f"{name}: {json.dumps(value, sort_keys=True)}" for name, value in values.items())
        if len(line) <= 110:
            terminalreporter.write_line(f"    {line}")
            continue
        for name, value in values.items():
            terminalreporter.write_line(f"    {name}: {json.dumps(value, sort_keys=True)}")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(_recorded, indent=2, sort_keys=True) + "\n")
    terminalreporter.write_line(f"(also written to {OUTPUT.relative_to(OUTPUT.parents[1])})")
