"""The process-wide AWS client factory.

Building boto3 sessions and clients is slow while reusing them is cheap, so
each process (web or worker child) keeps one ``ClientFactory`` and every
request's steps take their clients from it. Tests swap it for one bound to
moto with :func:`set_client_factory`.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from django.conf import settings

from provisioning.clients import ClientFactory, GrantClients
from provisioning.spec import GrantSpec

_factory: ClientFactory | None = None
_factory_lock = threading.Lock()


def client_factory() -> ClientFactory:
    """This process's factory, built on first use."""
    global _factory
    with _factory_lock:
        if _factory is None:
            _factory = ClientFactory(endpoint_url=settings.AWS_ENDPOINT_URL or None)
        return _factory


def set_client_factory(factory: ClientFactory | None) -> None:
    """Replace this process's factory; ``None`` builds a fresh one on next use."""
    global _factory
    with _factory_lock:
        _factory = factory


def grant_clients_for(spec: GrantSpec, *, before_write: Callable[[str, str], None] | None = None) -> GrantClients:
    """The DataLake and Remote clients for one grant, from this process's factory;
    ``before_write`` is called before each AWS write (see GrantClients)."""
    return GrantClients(client_factory(), spec, before_write=before_write)
