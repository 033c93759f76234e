"""Which request and which step a log line belongs to.

The step runner wraps each step in ``log_context(request_id=..., step=...)``;
every line logged inside it, by the portal, the engine or a library, carries
those fields, because ``LogContextFilter`` sits on the handler (a filter on a
logger would see only that logger's own lines). The context lives in a
``ContextVar``, so threads and the Celery pool's processes never see one
another's.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

# Always present on a record, so formatters can name them without guarding.
CONTEXT_FIELDS = ("request_id", "step")

_context: ContextVar[dict[str, Any]] = ContextVar("portal_log_context", default={})


@contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Add ``fields`` (e.g. ``request_id=42, step="create_role"``) to every
    log line inside the block. Nested blocks add to and override the outer
    one; leaving a block restores the outer fields."""
    merged = {**_context.get(), **{key: value for key, value in fields.items() if value is not None}}
    token = _context.set(merged)
    try:
        yield merged
    finally:
        _context.reset(token)


def current_log_context() -> dict[str, Any]:
    """The fields ``log_context`` has set at this point (a copy)."""
    return dict(_context.get())


class LogContextFilter(logging.Filter):
    """Copies the current log context, and the running Celery task, onto records."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name in CONTEXT_FIELDS:
            # A value given with extra= wins over the surrounding context.
            if getattr(record, name, None) is None:
                setattr(record, name, context.get(name))
        for name, value in context.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        task = _current_celery_task()
        if task is not None and not hasattr(record, "task_id"):
            record.task_id = task.request.id
            record.task_name = task.name
        return True


def _current_celery_task():
    from celery import current_task

    # current_task is a proxy: falsy outside a task, and its request id is
    # None when a task is called directly instead of through a worker.
    if current_task and getattr(current_task.request, "id", None):
        return current_task
    return None
