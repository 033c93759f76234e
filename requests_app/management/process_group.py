"""Starting the quickstart's processes together and stopping them together.

Each child runs in a session (and so a process group) of its own, so:
- a Ctrl-C in the terminal reaches only the quickstart, which then stops the
  children in order, each gracefully (a Celery worker finishes the step it is
  running) instead of all of them being interrupted at once;
- whatever a child started (the Celery pool's processes) is in the child's
  group, and one ``killpg`` removes any of it that outlives the child.
A child that has exited is not reaped until its group has been cleaned up, so
its process id, which is also the group id, cannot be reused meanwhile.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    stop_timeout: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def has_exited(self) -> bool:
        """True once the process has ended (without reaping it)."""
        if self.process.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def stop(self) -> int:
        """Ask the child to stop (SIGTERM), wait ``stop_timeout`` seconds,
        then kill whatever is left of its process group. Returns its exit code."""
        if not self.has_exited():
            self._signal_leader(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while not self.has_exited() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.has_exited():
                logger.warning("%s did not stop within %ss; killing it", self.name, self.stop_timeout)
        self._kill_group()
        code = self.process.wait()
        self._wait_until_group_is_gone()
        return code

    def _signal_leader(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def _wait_until_group_is_gone(self, timeout: float = 5) -> None:
        # SIGKILL is delivered asynchronously: wait until nothing of the group
        # is left, so "stopped" means gone.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)
        logger.warning("processes of %s's group outlived SIGKILL for %ss", self.name, timeout)

    def _kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            # ESRCH: the group is empty. EPERM: only zombies are left in it.
            pass


class ProcessGroup:
    """The quickstart's children, stopped in the reverse order of starting."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str], cwd: str, stop_timeout: float = 10,
        output: Path | None = None,
    ) -> Child:
        """Start ``argv``; with ``output``, its stdout and stderr are appended to that file."""
        if output is None:
            process = subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True)
        else:
            with open(output, "ab") as sink:
                process = subprocess.Popen(
                    argv, env=env, cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL, stdout=sink,
                    stderr=subprocess.STDOUT,
                )
        child = Child(name=name, process=process, stop_timeout=stop_timeout)
        self.children.append(child)
        logger.info("started %s (pid %s)", name, process.pid)
        return child

    def first_exited(self) -> Child | None:
        return next((child for child in self.children if child.has_exited()), None)

    def stop_all(self) -> dict[str, int]:
        """Stop every child; returns their exit codes by name."""
        codes = {}
        for child in reversed(self.children):
            codes[child.name] = child.stop()
        self.children = []
        return codes
