"""What every benchmark shares: the moto server, the seeded world, the
portal's people and accounts, and where the workers find the database and
the broker."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from bench.moto_server import MotoServer
from bench.sizes import Size
from bench.workers import Workers
from bench.world import Grant, RemoteAdmin, baseline_spec
from provisioning.clients import ClientFactory
from provisioning.demo_world import DemoWorld
from provisioning.spec import GrantSpec
from requests_app.aws import set_client_factory
from requests_app.demo import seed_aws_world, seed_portal
from requests_app.grants import account_access
from requests_app.models import AwsAccount

# Credentials that only moto accepts: the benchmarks never reach real AWS.
FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@dataclass
class Bench:
    """One run's shared parts, handed to every benchmark."""

    size: Size
    world: DemoWorld
    admin: RemoteAdmin
    requester: Any  # files for the DataLake account
    approver: Any  # approves for the Remote account, sees every request
    datalake_account: AwsAccount
    remote_account: AwsAccount
    database_url: str
    broker_url: str
    moto: MotoServer
    # The modelled AWS latency, ms by service (``bench.moto_server.parse_latency``);
    # the server waits it only while ``suite.at_each_latency`` says so.
    latency: dict[str, float]
    # Prefixes the names of the grants made (``RemoteAdmin.tag``) from the next ``fresh_aws`` on.
    tag: str = ""
    _workers: Workers | None = None

    def fresh_aws(self) -> None:
        """Start AWS over: an empty moto, seeded again with the runbook's world.

        moto looks some things up by walking every role of an account (each
        call made with assumed credentials does), so it slows down as grants
        pile up roles; each benchmark, and each side of one, starts from the
        same empty state instead. Only between runs: work in flight would
        lose its credentials. The registered accounts stay valid (their
        provisioner roles are seeded under the same names).
        """
        self.moto.reset()
        self.world = seed_aws_world(self.moto.endpoint_url)
        self.admin = RemoteAdmin(self.world, tag=self.tag)

    def workers(self, processes: int) -> Workers:
        """The running Celery worker, with ``processes`` pool processes, on this
        bench's database, broker and moto. A worker of the right size is kept
        for the next benchmark (starting one takes seconds); another size
        replaces it."""
        if self._workers is not None and self._workers.processes != processes:
            self.stop_workers()
        if self._workers is None:
            self._workers = Workers(
                processes, database_url=self.database_url, broker_url=self.broker_url, endpoint_url=self.world.endpoint_url
            ).start()
        return self._workers

    def stop_workers(self) -> None:
        if self._workers is not None:
            self._workers.stop()
            self._workers = None


def database_url() -> str:
    """The URL of the database Django is connected to (for child processes)."""
    db = connection.settings_dict
    credentials = db.get("USER") or ""
    if db.get("PASSWORD"):
        credentials += f":{db['PASSWORD']}"
    host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}" if credentials else f"postgres://{host}/{db['NAME']}"


@contextlib.contextmanager
def open_bench(size: Size, *, latency: Mapping[str, float] | None = None) -> Iterator[Bench]:
    """Start moto, seed the runbook's world and the portal's demo people, and
    point this process's AWS clients at moto."""
    saved = {name: os.environ.get(name) for name in (*FAKE_AWS_ENVIRONMENT, "AWS_PROFILE", "AWS_ENDPOINT_URL")}
    os.environ.update(FAKE_AWS_ENVIRONMENT)
    os.environ.pop("AWS_PROFILE", None)
    with MotoServer() as moto:
        os.environ["AWS_ENDPOINT_URL"] = moto.endpoint_url
        previous = set_client_factory(ClientFactory(endpoint_url=moto.endpoint_url))
        try:
            world = seed_aws_world(moto.endpoint_url)
            portal = seed_portal(world)
            users = get_user_model().objects.in_bulk(["requester", "approver"], field_name="username")
            bench = Bench(
                size=size,
                world=world,
                admin=RemoteAdmin(world),
                requester=users["requester"],
                approver=users["approver"],
                datalake_account=portal.datalake_account,
                remote_account=portal.remote_account,
                database_url=database_url(),
                broker_url=settings.CELERY_BROKER_URL,
                moto=moto,
                latency=dict(latency or {}),
            )
            try:
                yield bench
            finally:
                bench.stop_workers()
        finally:
            set_client_factory(previous)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def baseline_specs(bench: Bench, grants: Sequence[Grant]) -> list[GrantSpec]:
    """The baseline's specs of ``grants``, with the accounts as the portal registered them."""
    datalake, remote = account_access(bench.datalake_account), account_access(bench.remote_account)
    return [baseline_spec(grant, datalake=datalake, remote=remote, region=bench.world.region) for grant in grants]
