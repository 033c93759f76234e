"""``manage.py quickstart``: the whole portal on one machine, nothing else installed.

Migrates the database (SQLite under var/ unless DATABASE_URL says otherwise),
starts a moto server in this process and seeds it with the runbook's world,
makes sure the demo users and accounts exist, then runs the web server, a
Celery worker and Celery beat as child processes that talk to that moto.
Ctrl-C (or SIGTERM) stops all of them together.

The terminal shows the banner and then one line per notable event of a
request (read from the audit trail); every process's own log lines go to
var/log/ (quickstart.log, web.log, worker.log, beat.log) in LOG_FORMAT.

This is only the embedded demo. Production runs the same code with
DATABASE_URL, CELERY_BROKER_URL and real AWS (AWS_ENDPOINT_URL unset).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.test.utils import override_settings

from requests_app.demo import DEMO_USERS, demo_request, generate_passwords, seed_portal
from requests_app.management.console_events import EventFeed
from requests_app.management.process_group import ProcessGroup

logger = logging.getLogger(__name__)

FAKE_AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
WEB_START_TIMEOUT = 60


class Command(BaseCommand):
    help = "Run the portal with an embedded database, broker and AWS (moto), seeded with the runbook's demo."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address the web server listens on.")
        parser.add_argument("--port", type=int, default=8000, help="Port of the web server (default 8000).")
        parser.add_argument("--aws-port", type=int, default=0, help="Port of the embedded moto server (default: a free one).")
        parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (default 2).")

    def handle(self, *args, **options):
        var_dir = Path(settings.VAR_DIR).resolve()
        var_dir.mkdir(parents=True, exist_ok=True)
        log_dir = var_dir / "log"
        log_dir.mkdir(exist_ok=True)
        _ensure_port_free(options["host"], options["port"], option="--port")
        if options["aws_port"]:
            # moto would fail in its own thread and never report ready.
            _ensure_port_free("127.0.0.1", options["aws_port"], option="--aws-port")
        stop = threading.Event()
        # Installed before any child exists, so no signal can leave one behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: stop.set())

        _log_to_file(log_dir / "quickstart.log")
        call_command("migrate", interactive=False, verbosity=0)
        # WhiteNoise serves the collected files, as in production (and does
        # not warn about a missing STATIC_ROOT).
        static_root = os.environ.get("STATIC_ROOT") or str(var_dir / "static")
        with override_settings(STATIC_ROOT=static_root):
            call_command("collectstatic", interactive=False, verbosity=0)
        moto = _start_moto(options["aws_port"])
        children = ProcessGroup()
        try:
            endpoint_url = "http://{}:{}".format(*moto.get_host_and_port())
            world, passwords = self._seed(var_dir, endpoint_url)
            connections.close_all()
            if stop.is_set():
                return
            env = self._child_env(var_dir, endpoint_url, world.region, options)
            env["STATIC_ROOT"] = static_root
            self._start_children(children, env, var_dir, log_dir, options)
            base_url = f"http://{options['host']}:{options['port']}"
            self._wait_for_web(children, base_url, stop, log_dir)
            feed = EventFeed(base_url=base_url)
            if not stop.is_set():
                self._print_banner(base_url, endpoint_url, world, passwords, log_dir)
            while not stop.wait(0.5):
                for line in feed.new_lines():
                    self.stdout.write(line)
                self.stdout.flush()
                exited = children.first_exited()
                if exited is not None:
                    log = log_dir / f"{exited.name}.log"
                    raise CommandError(
                        f"{exited.name} exited unexpectedly (code {exited.process.poll()}); stopping. See {log}"
                    )
        finally:
            self.stdout.write("Stopping the web server, beat and the worker...")
            self.stdout.flush()
            codes = children.stop_all()
            moto.stop()
            self.stdout.write(f"Stopped ({', '.join(f'{name}: {code}' for name, code in codes.items())}).")

    def _seed(self, var_dir: Path, endpoint_url: str):
        # Seeding talks to moto only, with fake credentials, whatever this
        # shell's AWS settings are.
        os.environ.update(FAKE_AWS_CREDENTIALS)
        os.environ.pop("AWS_PROFILE", None)
        from provisioning.demo_world import seed_aws_world

        world = seed_aws_world(endpoint_url)
        logins_file = var_dir / "demo-logins.json"
        logins = _read_json(logins_file) or {}
        passwords = logins.get("passwords") or {}
        if set(passwords) != set(DEMO_USERS):
            passwords = generate_passwords()
        seeded = seed_portal(world, passwords=passwords, password_hashes=logins.get("password_hashes"))
        logins = {"passwords": seeded.passwords, "password_hashes": seeded.password_hashes}
        _write_private(logins_file, json.dumps(logins, indent=2))
        _write_private(var_dir / "demo-world.json", json.dumps(world.as_dict(), indent=2))
        return world, passwords

    def _child_env(self, var_dir: Path, endpoint_url: str, region: str, options) -> dict[str, str]:
        metrics_dir = var_dir / "metrics"
        metrics_dir.mkdir(exist_ok=True)
        # Metrics of an earlier run would be added to this run's.
        for stale in metrics_dir.glob("*.db"):
            stale.unlink()
        env = dict(os.environ)
        env.pop("AWS_PROFILE", None)
        env.pop("AWS_SESSION_TOKEN", None)
        env.update(FAKE_AWS_CREDENTIALS)
        env.update(
            {
                "AWS_ENDPOINT_URL": endpoint_url,
                "AWS_DEFAULT_REGION": region,
                "PORTAL_VAR_DIR": str(var_dir),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "PORTAL_BASE_URL": f"http://{options['host']}:{options['port']}",
                "SECRET_KEY": env.get("SECRET_KEY") or _secret_key(var_dir),
                # The keys this process seeded the accounts' external ids with
                # (FIELD_ENCRYPTION_KEYS, else the one kept in var/): the
                # worker must decrypt what was written here.
                "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _start_children(self, children: ProcessGroup, env: dict[str, str], var_dir: Path, log_dir: Path, options) -> None:
        cwd = str(settings.BASE_DIR)
        python = sys.executable
        address = f"{options['host']}:{options['port']}"
        # Each child writes all it prints (its JSON log lines, and what Celery
        # and gunicorn print themselves) to a file of its own, appended
        # across runs.
        logs = {name: log_dir / f"{name}.log" for name in ("worker", "beat", "web")}
        # Started in this order and stopped in the reverse one: the web server
        # goes first, so nothing new is asked while the worker finishes.
        children.start(
            "worker",
            [
                # --quiet: no start-up banner; the worker's settings are the
                # portal's (portal/celery.py), not worth a screen each start.
                python, "-m", "celery", "-A", "portal", "--quiet", "worker",
                "--loglevel", env.get("LOG_LEVEL", "INFO"),
                "--concurrency", str(options["concurrency"]),
                "--hostname", "quickstart@%h",
                # Gossip and mingle talk to other workers; there are none.
                "--without-gossip", "--without-mingle",
            ],
            env=env,
            cwd=cwd,
            output=logs["worker"],
            # Warm shutdown lets a running step finish its AWS call.
            stop_timeout=30,
        )
        children.start(
            "beat",
            [python, "-m", "celery", "-A", "portal", "--quiet", "beat", "--loglevel", env.get("LOG_LEVEL", "INFO"),
             "--schedule", str(var_dir / "celerybeat-schedule")],
            env=env,
            cwd=cwd,
            output=logs["beat"],
        )
        # The server production runs (Dockerfile), not Django's development
        # server; threads, so the pages' polling does not queue behind a
        # request that is waiting on AWS.
        children.start(
            "web",
            [python, "-m", "gunicorn", "portal.wsgi:application", "--bind", address,
             "--workers", "1", "--threads", "8", "--graceful-timeout", "5"],
            env=env,
            cwd=cwd,
            output=logs["web"],
        )

    def _wait_for_web(self, children: ProcessGroup, base_url: str, stop: threading.Event, log_dir: Path) -> None:
        deadline = time.monotonic() + WEB_START_TIMEOUT
        while not stop.is_set():
            exited = children.first_exited()
            if exited is not None:
                raise CommandError(
                    f"{exited.name} exited during start-up (code {exited.process.poll()}); see {log_dir / exited.name}.log"
                )
            try:
                with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise CommandError(f"the web server did not answer on {base_url} within {WEB_START_TIMEOUT}s")
            stop.wait(0.2)

    def _print_banner(self, base_url: str, endpoint_url: str, world, passwords: dict[str, str], log_dir: Path) -> None:
        request = demo_request(world)
        width = max(len(name) for name in DEMO_USERS)
        roles = {
            "requester": f"files requests for DataLake {world.datalake_account_id}",
            "approver": f"approves for Remote {world.remote_account_id}",
            "admin": "portal administrator, staff and superuser (/admin/)",
        }
        lines = [
            "",
            "DMS Access Portal is running (embedded demo: SQLite, local worker and beat, moto as AWS)",
            f"  Portal:  {base_url}/",
            "  Logins:",
            *[f"    {name:<{width}}  {passwords[name]}   {roles[name]}" for name in DEMO_USERS],
            f"  AWS:     moto at {endpoint_url} (re-created at every start)",
            "  The runbook's request (file it as requester):",
            f"    secret ARN                {request['secret_arn']}",
            f"    KMS key ARN               {request['kms_key_arn']}",
            f"    engine / endpoint id      {request['engine']} / {request['endpoint_identifier']}",
            f"    replication instance ARN  {request['replication_instance_arn']}",
            f"  A secret under the AWS-managed key (preflight refuses it): {world.managed_secret_arn}",
            f"  Metrics: {base_url}/metrics   Health: {base_url}/healthz  {base_url}/readyz",
            f"  Logs:    {log_dir}/ (quickstart, web, worker, beat; LOG_FORMAT={settings.LOG_FORMAT}, LOG_LEVEL={settings.LOG_LEVEL})",
            *_root_note(),
            "  Press Ctrl-C to stop everything. What happens to requests is shown below.",
            "",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()


def _root_note() -> list[str]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    # Celery warns in worker.log about running as root. Dropping to another
    # user here would leave the worker unable to write var/, which this user
    # owns; the portal's workers accept only JSON (not pickle), which is what
    # makes a root worker dangerous, and the Docker image runs as a user of
    # its own.
    return [
        "  Note:    this shell is root (as in a container), so the worker is too; Celery's warning about it is",
        "           in worker.log. Its tasks accept JSON only, never pickle; the Docker image runs as user portal.",
    ]


def _log_to_file(path: Path) -> None:
    """Send this process's log lines to ``path`` instead of the terminal, same format."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            file_handler = logging.FileHandler(path, encoding="utf-8")
            file_handler.setFormatter(handler.formatter)
            for log_filter in handler.filters:
                file_handler.addFilter(log_filter)
            file_handler.setLevel(handler.level)
            root.removeHandler(handler)
            root.addHandler(file_handler)


def _ensure_port_free(host: str, port: int, *, option: str) -> None:
    # Otherwise the readiness wait could mistake another server on the port
    # (an earlier quickstart still stopping) for this one's web server.
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(f"{host}:{port} is in use ({exc.strerror}); pick another with {option}") from None


def _start_moto(port: int):
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise CommandError('quickstart needs moto: pip install -c constraints.txt -e ".[test]"') from exc
    # Its request log would drown the portal's own lines.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def _secret_key(var_dir: Path) -> str:
    # One key per installation, kept across runs so logins survive a restart.
    path = var_dir / "secret_key"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(50))
    return path.read_text().strip()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
