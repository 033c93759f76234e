"""Errors raised by the provisioning engine.

Steps never let a bare botocore error escape: they raise one of these, so the
workflow can decide between retrying and failing, and show a diagnosis.
"""
from __future__ import annotations


class ProvisioningError(Exception):
    """Base class for every error the engine raises."""

    def __init__(self, message: str, *, diagnosis: str | None = None, aws_request_ids: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.diagnosis = diagnosis
        self.aws_request_ids = list(aws_request_ids or [])


class RetryableAwsError(ProvisioningError):
    """Throttling, 5xx, or a principal AWS cannot see yet: try again later.

    ``diagnosis`` is the code to record if the retries run out
    (``principal_not_visible`` for eventual consistency).
    """


class PermanentAwsError(ProvisioningError):
    """Access denied, validation, not found, a resource owned by someone else:
    retrying cannot help, the step fails at once with ``diagnosis``."""


class InvalidInput(ProvisioningError, ValueError):
    """A grant input (ARN, name, engine...) breaks a rule. ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", diagnosis="invalid_input")
        self.field = field
        self.rule = message
