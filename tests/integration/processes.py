"""Real Celery worker and beat processes for the integration tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER_ARGS = [
    "worker", "-P", "prefork", "-Q", "celery",
    "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO",
]  # fmt: skip


class CeleryProcess:
    """One ``celery -A portal ...`` process (and its pool), in its own process group."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.log_path.name} never logged {text!r}:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the process and its pool children at once, as a crashed host would."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def pause(self) -> None:
        """SIGSTOP the process and its pool, as a frozen VM or a stalled container would be."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM: running tasks finish first)."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)

    def stop(self, timeout: float = 15) -> None:
        """Warm shutdown, SIGKILL if it hangs."""
        self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


class WorkerPool:
    """The worker processes of one test module; tests may kill and add workers."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        concurrency: int = 2,
        imports: tuple[str, ...] = ("tests.integration.fault_hooks", "tests.integration.aws_faults"),
    ):
        self.env = env
        self.log_dir = log_dir
        self.concurrency = concurrency
        # Modules each worker imports at start (``celery worker -I``): the
        # test-only fault hooks at the step and at the botocore layer.
        self.imports = imports
        self.workers: list[CeleryProcess] = []

    def start(self, count: int = 1) -> list[CeleryProcess]:
        started = []
        for _ in range(count):
            name = f"w-{uuid.uuid4().hex[:8]}"
            args = [*WORKER_ARGS, "-c", str(self.concurrency), "-n", f"{name}@%h", "-I", ",".join(self.imports)]
            started.append(CeleryProcess(args, self.env, self.log_dir / f"{name}.log"))
        for worker in started:
            worker.wait_for_log(" ready.")
        self.workers.extend(started)
        return started

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers.clear()

    def stop_all(self, *, also: list[CeleryProcess] = ()) -> None:
        """Stop every worker (and ``also`` those processes), all at once."""
        processes = [*self.workers, *also]
        for process in processes:
            process.terminate()
        for process in processes:
            process.stop()
        self.workers.clear()

    def logs(self, tail: int | None = 4000) -> str:
        """Every worker's log (also of killed ones), each cut to its last ``tail`` characters."""
        parts = []
        for path in sorted(self.log_dir.glob("w*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name}\n{text[-tail:] if tail else text}")
        return "\n".join(parts)


@contextmanager
def running_pool(env: dict[str, str], log_dir: Path, *, count: int = 2, **options) -> Iterator[WorkerPool]:
    """``count`` workers (``options`` as for WorkerPool) and beat, stopped on exit."""
    pool = WorkerPool(env, log_dir, **options)
    beat = CeleryProcess(["beat", "-s", str(log_dir / "beat-schedule"), "--loglevel=INFO"], env, log_dir / "beat.log")
    try:
        pool.start(count)
        beat.wait_for_log("beat: Starting...")
        yield pool
    finally:
        pool.stop_all(also=[beat])
