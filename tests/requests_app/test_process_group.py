"""The quickstart's children stop together, and leave nothing behind."""
from __future__ import annotations

import os
import sys
import time

from requests_app.management.process_group import ProcessGroup

# A child that starts a grandchild, reports both pids, then waits; with
# "stubborn" it ignores SIGTERM, as a hung process would.
PARENT = """
import os, signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[2], "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # A zombie has ended; it only waits for its parent to collect it.
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start(group: ProcessGroup, name: str, mode: str, tmp_path) -> list[int]:
    pids_file = tmp_path / f"{name}.pids"
    group.start(name, [sys.executable, "-c", PARENT, mode, str(pids_file)], env=dict(os.environ), cwd=str(tmp_path), stop_timeout=1)
    for _ in range(200):
        if pids_file.exists() and pids_file.read_text():
            return [int(pid) for pid in pids_file.read_text().split()]
        time.sleep(0.05)
    raise AssertionError(f"{name} never started")


def test_stopping_ends_each_child_and_everything_it_started(tmp_path):
    group = ProcessGroup()
    polite = start(group, "polite", "polite", tmp_path)
    stubborn = start(group, "stubborn", "stubborn", tmp_path)
    assert all(alive(pid) for pid in polite + stubborn)

    codes = group.stop_all()

    assert not any(alive(pid) for pid in polite + stubborn)
    assert codes == {"stubborn": -9, "polite": -15}


def test_a_child_that_exits_on_its_own_is_noticed(tmp_path):
    group = ProcessGroup()
    group.start("short", [sys.executable, "-c", "raise SystemExit(3)"], env=dict(os.environ), cwd=str(tmp_path))
    for _ in range(200):
        if group.first_exited() is not None:
            break
        time.sleep(0.05)
    assert group.first_exited().name == "short"
    assert group.stop_all() == {"short": 3}
