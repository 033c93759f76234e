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

The latency model: moto on loopback answers in a few milliseconds, AWS in
tens to hundreds, and many calls at once. Each signed request first waits
its service's delay (``LatencyModel``), on its own server thread and before
it queues for the lock that serialises moto, so calls made at once wait
side by side, as they do against AWS; only moto's own work is serialised.
The delay is set while the server runs (``MotoServer.set_latency``), so one
run measures both sides at 0 ms and at the modelled latency.

Run as ``python -m bench.moto_server``: it prints the port it listens on (port
0, so the system picks a free one) and serves until its standard input closes.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping

from requests_app.management.process_group import Child

# The modelled latency (ms per call, by the service in the request's SigV4
# credential scope) when BENCH_AWS_LATENCY_MS is not set. Round figures for a
# caller in the same region as the accounts, over a kept-alive HTTPS
# connection, for the calls a grant makes (see bench/LATENCY.md for why):
# IAM is a global service answered from us-east-1 and its writes are slow;
# STS, Secrets Manager and KMS are regional and answer simple reads and
# writes quickly; DMS's control plane is the slowest of the five.
DEFAULT_LATENCY_MS = "iam=80,sts=40,secretsmanager=30,kms=30,dms=100"
# The path the parent sets the latency through (moto never serves it).
LATENCY_PATH = "/bench/latency"
# The key of a table's delay for the services it does not name.
ANY_SERVICE = "*"


def parse_latency(text: str) -> dict[str, float]:
    """BENCH_AWS_LATENCY_MS as a table of milliseconds by service.

    A single number applies to every service ("50" -> {"*": 50.0}); a table
    names services ("iam=80,sts=40"), and may give the others a delay with
    ``*=N``; a service it does not name waits nothing. "0" or "" is no
    latency at all.
    """
    table: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        service, _, value = item.rpartition("=")
        try:
            milliseconds = float(value)
        except ValueError:
            raise ValueError(f"BENCH_AWS_LATENCY_MS: {item!r} is not a number of milliseconds") from None
        if milliseconds < 0 or milliseconds != milliseconds or milliseconds == float("inf"):
            raise ValueError(f"BENCH_AWS_LATENCY_MS: {item!r} is not a delay")
        table[service.strip().lower() or ANY_SERVICE] = milliseconds
    return {service: ms for service, ms in table.items() if ms > 0}


def describe_latency(table: Mapping[str, float]) -> str:
    """The table as BENCH_AWS_LATENCY_MS spells it ("0" for none)."""
    return ",".join(f"{service}={ms:g}" for service, ms in table.items()) or "0"


def call_latency_ms(table: Mapping[str, float], operations: Iterable[str]) -> float:
    """The delay the model adds to ``operations`` ("service:Operation") made one after another."""
    return sum(table.get(operation.split(":", 1)[0], table.get(ANY_SERVICE, 0.0)) for operation in operations)


def signing_service(environ: Mapping[str, object]) -> str | None:
    """The service a request is signed for: the fourth part of its SigV4
    credential scope (``Credential=KEY/DATE/REGION/SERVICE/aws4_request``).
    None for an unsigned request (moto's own API, the latency path)."""
    authorization = str(environ.get("HTTP_AUTHORIZATION") or "")
    for part in authorization.replace(",", " ").split():
        if part.startswith("Credential="):
            scope = part[len("Credential="):].split("/")
            if len(scope) == 5:
                return scope[3].lower()
    return None


class LatencyModel:
    """WSGI middleware: waits each signed request's service delay, then hands
    it to ``app``. Wrap the app *outside* any lock that serialises it.
    ``PUT LATENCY_PATH`` with a JSON table of milliseconds by service (as
    ``parse_latency`` makes) replaces the table."""

    def __init__(self, app: Callable, *, sleep: Callable[[float], None] = time.sleep):
        self.app = app
        self.table: dict[str, float] = {}
        self._sleep = sleep

    def delay_seconds(self, environ: Mapping[str, object]) -> float:
        service = signing_service(environ)
        if service is None:
            return 0.0
        return self.table.get(service, self.table.get(ANY_SERVICE, 0.0)) / 1000

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == LATENCY_PATH:
            return self._set(environ, start_response)
        delay = self.delay_seconds(environ)
        if delay:
            self._sleep(delay)
        return self.app(environ, start_response)

    def _set(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b"{}"
        try:
            table = {str(service): float(ms) for service, ms in json.loads(body).items()}
        except (ValueError, AttributeError, TypeError) as error:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [f"not a latency table: {error}".encode()]
        self.table = table  # one assignment: a request in flight sees the old table or the new
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(self.table).encode()]


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

    def set_latency(self, table: Mapping[str, float]) -> None:
        """Make every later call wait ``table``'s delay (ms by service, see ``parse_latency``)."""
        request = urllib.request.Request(
            f"{self.endpoint_url}{LATENCY_PATH}", method="PUT", data=json.dumps(dict(table)).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
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

    def serialised(environ, start_response):
        with one_at_a_time:
            return list(moto(environ, start_response))

    # The delay is waited before the lock: calls made at once wait side by side.
    app = LatencyModel(serialised)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the parent closes the pipe, or dies
    server.shutdown()


if __name__ == "__main__":
    _serve()
