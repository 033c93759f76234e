"""A moto server in a process of its own, playing AWS for the benchmarks.

moto answers from one Python process; run inside the benchmark's process it
would share the interpreter lock with whatever is being measured. As a child
process it is one more program on the machine, serving the portal and the
baseline alike.

Run as ``python -m bench.moto_server``: it prints the port it listens on (port
0, so the system picks a free one) and serves until its standard input closes.
"""
from __future__ import annotations

import logging
import subprocess
import sys

from requests_app.management.process_group import Child


class MotoServer:
    """The moto child process; ``endpoint_url`` once started."""

    def __init__(self) -> None:
        self._child: Child | None = None
        self.endpoint_url = ""

    def start(self) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.moto_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._child = Child(name="moto", process=process, stop_timeout=5)
        line = process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the moto server did not start (it said {line!r})")
        self.endpoint_url = f"http://127.0.0.1:{line}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._child is not None:
            if self._child.process.stdin:
                self._child.process.stdin.close()
            self._child.stop()
            self._child = None

    def __enter__(self) -> "MotoServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _serve() -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()  # until the parent closes the pipe, or dies
    server.stop()


if __name__ == "__main__":
    _serve()
