"""boto3 clients for the provisioner roles of the registered accounts.

The portal runs with one set of base credentials and reaches each account by
assuming that account's provisioner role, with a session name naming the
request so CloudTrail shows which request acted. Building a boto3 session is
slow (tens of milliseconds) and sessions are not thread-safe, while clients are
cheap to reuse and thread-safe; so one base session per process builds every
client, with the assumed credentials passed explicitly, under a lock.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from provisioning.aws_errors import translate_error
from provisioning.spec import AccountAccess, GrantSpec

# Assumed credentials are replaced this long before they expire, so a step
# that starts with them can finish before AWS refuses them.
REFRESH_MARGIN_SECONDS = 5 * 60
ASSUME_ROLE_DURATION_SECONDS = 3600


@dataclass(frozen=True)
class AssumedCredentials:
    """Temporary credentials of one provisioner role session."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float  # seconds since the epoch


class ClientFactory:
    """Builds and caches boto3 clients acting as an account's provisioner role.

    Thread-safe. One instance per process is meant to be shared by every
    request the process works on.
    """

    def __init__(
        self,
        *,
        base_session: boto3.session.Session | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        clock: Callable[[], float] = time.time,
    ):
        self._base_session = base_session or boto3.session.Session()
        self._endpoint_url = endpoint_url if endpoint_url is not None else (os.environ.get("AWS_ENDPOINT_URL") or None)
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard"},
        )
        self._clock = clock
        # Guards the caches and every use of the base session, which is not
        # thread-safe; AWS calls happen outside it.
        self._lock = threading.Lock()
        self._assume_locks: dict[tuple, threading.Lock] = {}
        self._credentials: dict[tuple, AssumedCredentials] = {}
        self._clients: dict[tuple, tuple[AssumedCredentials, Any]] = {}
        self._sts_clients: dict[str, Any] = {}

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint every client talks to (None: the real AWS endpoints)."""
        return self._endpoint_url

    def client(self, service: str, *, account: AccountAccess, session_name: str, region: str) -> Any:
        """A boto3 client for ``service`` in ``region`` acting as ``account``'s
        provisioner role under ``session_name``.

        The role is assumed once per (role, session name, external id) and its
        credentials reused until five minutes before they expire; the client
        is reused for as long as its credentials are.
        """
        credentials = self.credentials(account=account, session_name=session_name, region=region)
        key = (account.account_id, service, region, session_name)
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None and cached[0] is credentials:
                return cached[1]
            client = self._base_session.client(
                service,
                region_name=region,
                endpoint_url=self._endpoint_url,
                config=self._config,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=credentials.session_token,
            )
            self._clients[key] = (credentials, client)
            return client

    def credentials(self, *, account: AccountAccess, session_name: str, region: str) -> AssumedCredentials:
        """The current credentials of ``account``'s provisioner role session,
        assuming the role when there are none or they are about to expire."""
        key = (account.provisioner_role_arn, session_name, account.external_id)
        with self._lock:
            current = self._credentials.get(key)
            if current is not None and self._fresh(current):
                return current
            assume_lock = self._assume_locks.setdefault(key, threading.Lock())
        # One AssumeRole per key even when several threads want it at once;
        # other keys are not held up by it.
        with assume_lock:
            with self._lock:
                current = self._credentials.get(key)
                if current is not None and self._fresh(current):
                    return current
            fresh = self._assume(account=account, session_name=session_name, region=region)
            with self._lock:
                self._credentials[key] = fresh
                self._forget_expired()
            return fresh

    def _fresh(self, credentials: AssumedCredentials) -> bool:
        return self._clock() < credentials.expires_at - REFRESH_MARGIN_SECONDS

    def _forget_expired(self) -> None:
        # Session names are per request, so without this a long-lived worker
        # would keep every request's credentials and clients forever.
        stale = [key for key, creds in self._credentials.items() if not self._fresh(creds)]
        for key in stale:
            del self._credentials[key]
            self._assume_locks.pop(key, None)
        live = set(map(id, self._credentials.values()))
        for key in [key for key, (creds, _) in self._clients.items() if id(creds) not in live]:
            del self._clients[key]

    def _sts(self, region: str) -> Any:
        with self._lock:
            sts = self._sts_clients.get(region)
            if sts is None:
                sts = self._base_session.client(
                    "sts", region_name=region, endpoint_url=self._endpoint_url, config=self._config
                )
                self._sts_clients[region] = sts
            return sts

    def _assume(self, *, account: AccountAccess, session_name: str, region: str) -> AssumedCredentials:
        params: dict[str, Any] = {
            "RoleArn": account.provisioner_role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": ASSUME_ROLE_DURATION_SECONDS,
        }
        if account.external_id:
            params["ExternalId"] = account.external_id
        try:
            response = self._sts(region).assume_role(**params)
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error, service="sts", operation="AssumeRole") from error
        raw = response["Credentials"]
        return AssumedCredentials(
            access_key_id=raw["AccessKeyId"],
            secret_access_key=raw["SecretAccessKey"],
            session_token=raw["SessionToken"],
            expires_at=_epoch(raw["Expiration"]),
        )


def _epoch(value: datetime | str) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


# AWS operations that only read (every other operation changes something).
READ_OPERATION_PREFIXES = ("Get", "Describe", "List")


class GrantClients:
    """The clients one grant uses: its DataLake and Remote provisioner roles,
    in the grant's region, under the grant's session name.

    ``before_write(service, operation)``, when given, is called right before
    every operation that changes something (not a Get, Describe or List) and
    may raise to stop it: the portal checks there that the worker still holds
    the step it runs.
    """

    def __init__(self, factory: ClientFactory, spec: GrantSpec, *, before_write: Callable[[str, str], None] | None = None):
        self.factory = factory
        self.spec = spec
        self.before_write = before_write

    def datalake(self, service: str) -> Any:
        """A client acting as the DataLake account's provisioner role."""
        return self._guarded(
            self.factory.client(
                service, account=self.spec.datalake, session_name=self.spec.session_name, region=self.spec.region
            )
        )

    def remote(self, service: str) -> Any:
        """A client acting as the Remote account's provisioner role."""
        return self._guarded(
            self.factory.client(
                service, account=self.spec.remote, session_name=self.spec.session_name, region=self.spec.region
            )
        )

    def _guarded(self, client: Any) -> Any:
        return client if self.before_write is None else WriteGuardedClient(client, self.before_write)


class WriteGuardedClient:
    """A boto3 client that calls ``before_write`` before each operation that is not a read.

    Everything else (``meta``, waiters, paginators, reads) passes through to
    the client unchanged. A wrapper per step rather than a botocore event
    handler: the client is cached and shared, the guard belongs to one run.
    """

    def __init__(self, client: Any, before_write: Callable[[str, str], None]):
        self._client = client
        self._before_write = before_write

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        operation = self._client.meta.method_to_api_mapping.get(name)
        if operation is None or operation.startswith(READ_OPERATION_PREFIXES):
            return attribute
        service = self._client.meta.service_model.service_name

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._before_write(service, operation)
            return attribute(*args, **kwargs)

        return guarded
