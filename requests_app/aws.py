"""The process-wide AWS client factory.

Building a boto3 session costs tens of milliseconds while reusing one costs
nothing, so every web request and every worker task of a process shares one
``ClientFactory`` (it is thread-safe and caches assumed credentials per
request session). Tests swap it for one bound to moto with
``set_client_factory``.
"""
from __future__ import annotations

import threading

from provisioning.clients import ClientFactory, GrantClients
from provisioning.spec import GrantSpec

_factory: ClientFactory | None = None
_lock = threading.Lock()


def client_factory() -> ClientFactory:
    """The process's factory, built on first use (honours ``AWS_ENDPOINT_URL``)."""
    global _factory
    if _factory is None:
        with _lock:
            if _factory is None:
                _factory = ClientFactory()
    return _factory


def set_client_factory(factory: ClientFactory | None) -> ClientFactory | None:
    """Replace the process's factory (None: build a fresh one on next use); returns the old one."""
    global _factory
    with _lock:
        previous, _factory = _factory, factory
    return previous


def grant_clients_for(spec: GrantSpec) -> GrantClients:
    """The DataLake and Remote clients of one grant, from the shared factory."""
    return GrantClients(client_factory(), spec)
