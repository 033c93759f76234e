"""Serialising the read-merge-write of one AWS policy across workers.

Two grants on the same secret (or key) each read the policy, add their own
statement and put the result. Run side by side, the second put would drop the
first grant's statement. The engine therefore takes ``lock(arn)`` around its
read-merge-write, and the portal gives it :func:`arn_lock`: a row lock in
Postgres, which every worker process on every host shares.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

from requests_app.models import ResourceLock


@contextmanager
def arn_lock(arn: str) -> Iterator[None]:
    """Hold an exclusive lock on ``arn`` for the duration of the ``with`` block.

    Meant to be entered outside any transaction: the lock lives in a
    transaction of its own, committed (and so released) when the block ends,
    whether it ends normally or with an error.
    """
    # The row is created in a transaction of its own first, so that two
    # workers meeting an ARN for the first time both end up waiting on the
    # same committed row rather than on each other's uncommitted inserts.
    ResourceLock.objects.get_or_create(arn=arn)
    with transaction.atomic():
        ResourceLock.objects.select_for_update().get(arn=arn)
        yield
