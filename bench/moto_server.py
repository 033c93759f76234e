"""A moto server in a process of its own, playing AWS for the benchmarks.

moto answers from one Python process; run inside the benchmark's process it
would share the interpreter lock with whatever is being measured. As a child
process it is one more program on the machine, serving the portal and the
baseline alike.

It serves one request at a time. moto's backends are not safe under
concurrent requests (two CreateRole calls at once can fail with "dictionary
changed size during iteration", answered as a 500), and the benchmarks run
workers and baseline processes side by side. Holding the interpreter lock,
moto would not answer two requests truly at once anyway.

Run as ``python -m bench.moto_server``: it prints the port it listens on (port
0, so the system picks a free one) and serves until its standard input closes.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import urllib.request

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

    def reset(self) -> None:
        """Forget every AWS resource (moto slows down as its accounts fill up)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=60) as response:
            json.load(response)

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
    # The parts ThreadedMotoServer is made of, with every request serialised.
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def app(environ, start_response):
        with one_at_a_time:
            return list(moto(environ, start_response))

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the parent closes the pipe, or dies
    server.shutdown()


if __name__ == "__main__":
    _serve()
