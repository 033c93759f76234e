"""A running step's claim: a short lease in the database, renewed while the step runs.

The runner claims a step by setting it running, bumping its attempt number
and giving it a lease of ``PROVISIONING_STEP_LEASE_SECONDS`` (all times on the
database's clock, so workers on hosts whose clocks disagree agree on it).
While the engine works on the step, a heartbeat thread beside it renews the
lease every ``PROVISIONING_STEP_HEARTBEAT_SECONDS``. A worker that dies, hangs
or is paused stops renewing; its lease lapses within seconds and the next task
for the request takes the step over (a new attempt).

A worker that lost its lease (taken over, or it could not renew it) must not
touch AWS again for that step: right before every AWS write the engine calls
:meth:`StepLease.check_before_write`, which refuses unless this attempt still
holds the step with at least ``PROVISIONING_STEP_WRITE_MARGIN_SECONDS`` of its
lease left. The record step refuses an overtaken attempt's result as well.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, Q, Value
from django.db.models.functions import Now

from provisioning.errors import ProvisioningError
from requests_app.models import ProvisioningStep

logger = logging.getLogger(__name__)

Status = ProvisioningStep.Status


def check_lease_timing(settings) -> None:
    """Refuse timing settings under which a live worker would lose its steps,
    or the sweep would mistake a waiting retry for lost work."""
    lease = float(settings.PROVISIONING_STEP_LEASE_SECONDS)
    heartbeat = float(settings.PROVISIONING_STEP_HEARTBEAT_SECONDS)
    margin = float(settings.PROVISIONING_STEP_WRITE_MARGIN_SECONDS)
    problems = []
    if not 0 < heartbeat <= lease / 3:
        problems.append("PROVISIONING_STEP_HEARTBEAT_SECONDS must be above 0 and at most a third of the lease")
    if not 0 <= margin <= lease - 2 * heartbeat:
        problems.append("PROVISIONING_STEP_WRITE_MARGIN_SECONDS must leave two heartbeats of the lease")
    if float(settings.PROVISIONING_STALL_SECONDS) <= float(settings.PROVISIONING_RETRY_BACKOFF_MAX):
        problems.append("PROVISIONING_STALL_SECONDS must exceed PROVISIONING_RETRY_BACKOFF_MAX")
    if float(settings.PROVISIONING_SWEEP_INTERVAL_SECONDS) <= 0:
        problems.append("PROVISIONING_SWEEP_INTERVAL_SECONDS must be above 0")
    if problems:
        raise ImproperlyConfigured("; ".join(problems) + f" (lease {lease:g} s).")


class LeaseLost(ProvisioningError):
    """This worker no longer holds (or cannot confirm it holds) the step it runs."""

    def __init__(self, message: str):
        super().__init__(message, diagnosis="lease_lost")


def lease_seconds() -> float:
    return float(settings.PROVISIONING_STEP_LEASE_SECONDS)


def database_now_plus(seconds: float) -> ExpressionWrapper:
    """The database's clock plus ``seconds``, as an expression."""
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=seconds), output_field=DurationField()), output_field=DateTimeField()
    )


def lease_expiry() -> ExpressionWrapper:
    """When a lease taken or renewed now runs out."""
    return database_now_plus(lease_seconds())


def lapsed_leases_q():
    """Running steps whose lease has run out (or that never had one)."""
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=Now())


class StepLease:
    """The lease of one attempt of one step, held by this process.

    Used as a context manager around the engine call: the heartbeat thread
    runs while the block does.
    """

    def __init__(self, step: ProvisioningStep):
        self.step_pk = step.pk
        self.attempt = step.attempts
        self.label = f"{step.phase} step {step.name} of request {step.request_id}, attempt {step.attempts}"
        self._lock = threading.Lock()
        # time.monotonic() keeps counting while the process is stopped, so a
        # paused worker sees its lease gone as soon as it resumes.
        self._valid_until = time.monotonic() + lease_seconds()
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StepLease:
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.step_pk}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            # Not forever: a renewal stuck on an unreachable database must not
            # hold the worker; once the step is recorded it renews nothing.
            self._thread.join(timeout=lease_seconds())

    @property
    def lost(self) -> bool:
        with self._lock:
            return self._lost

    def renew(self) -> bool:
        """Extend the lease by a whole lease from now; False once it is lost."""
        sent = time.monotonic()
        renewed = ProvisioningStep.objects.filter(
            pk=self.step_pk, status=Status.RUNNING, attempts=self.attempt
        ).update(lease_expires_at=lease_expiry())
        with self._lock:
            if renewed:
                # Counted from before the UPDATE: the database's expiry is later.
                self._valid_until = sent + lease_seconds()
            else:
                self._lost = True
        if not renewed:
            logger.warning("%s: lease lost (the step was taken over or reset)", self.label)
        return bool(renewed)

    def check_before_write(self, service: str = "", operation: str = "") -> None:
        """Raise ``LeaseLost`` unless this attempt still holds the step with
        the write margin left on its lease (asked of the database)."""
        margin = float(settings.PROVISIONING_STEP_WRITE_MARGIN_SECONDS)
        what = f"{service}:{operation}" if operation else "the write"
        with self._lock:
            if self._lost:
                raise LeaseLost(f"Stopped before {what}: {self.label} was taken over.")
            if time.monotonic() > self._valid_until - margin:
                raise LeaseLost(f"Stopped before {what}: the lease of {self.label} could not be renewed in time.")
        try:
            held = ProvisioningStep.objects.filter(
                pk=self.step_pk,
                status=Status.RUNNING,
                attempts=self.attempt,
                lease_expires_at__gt=database_now_plus(margin),
            ).exists()
        except DatabaseError as error:
            raise LeaseLost(f"Stopped before {what}: the lease of {self.label} could not be checked ({error}).")
        if not held:
            with self._lock:
                self._lost = True
            raise LeaseLost(f"Stopped before {what}: {self.label} no longer holds its lease.")

    def _beat(self) -> None:
        interval = float(settings.PROVISIONING_STEP_HEARTBEAT_SECONDS)
        try:
            while not self._stop.wait(interval):
                try:
                    if not self.renew():
                        return
                except DatabaseError:
                    # The next beat tries again; meanwhile the lease runs down
                    # and check_before_write refuses once too little is left.
                    logger.warning("%s: could not renew the lease", self.label, exc_info=True)
                    close_old_connections()
                    connection.close()
        finally:
            # This thread's own database connection.
            connection.close()
