"""How the API answers when something is refused.

The services raise the domain's errors (``requests_app.errors``); this module
turns them, and DRF's own exceptions, into one JSON shape:

    {"detail": "...", "code": "...", "errors": {"field": ["message", ...]}}

``errors`` is present on every 400 (empty when the body could not be parsed);
``current_plan_hash`` on the 409 of an approval of a plan that has since
changed (code ``plan_changed``). Anything not
recognised here is left to Django (a 500 is a bug to fix, never a shape to
document).
"""
from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from provisioning.errors import InvalidInput, ProvisioningError
from requests_app import errors as domain


class AwsUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "AWS could not be reached; try again shortly."
    default_code = "aws_unavailable"


_CODES = {
    domain.PlanChanged: "plan_changed",
    domain.NotAllowed: "permission_denied",
    domain.NotFoundForUser: "not_found",
    domain.InvalidTransition: "invalid_transition",
    domain.IdempotencyConflict: "idempotency_conflict",
}


class DomainRefusal(exceptions.APIException):
    """A service's refusal, answered with the status the domain error names."""

    def __init__(self, error: domain.DomainError):
        self.status_code = error.status_code
        code = next((c for cls, c in _CODES.items() if isinstance(error, cls)), "refused")
        super().__init__(error.message, code=code)
        self.current_plan_hash = getattr(error, "current_plan_hash", None)


def _as_api_exception(exc: Exception) -> Exception:
    if isinstance(exc, domain.ValidationFailed):
        return exceptions.ValidationError(exc.errors)
    if isinstance(exc, domain.NotFoundForUser):
        # Always the same words: a 404 must not tell "missing" from "not yours".
        return exceptions.NotFound()
    if isinstance(exc, domain.DomainError):
        return DomainRefusal(exc)
    if isinstance(exc, InvalidInput):
        return exceptions.ValidationError({exc.field: [exc.rule]})
    if isinstance(exc, ProvisioningError):
        return AwsUnavailable(exc.message, code=exc.diagnosis or "aws_unavailable")
    return exc


def flatten_field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF nests errors of lists and nested objects; clients get ``field.0.sub`` keys."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for field, messages in flatten_field_errors(value, name).items():
                flat.setdefault(field, []).extend(messages)
    elif isinstance(detail, list):
        strings = [str(item) for item in detail if not isinstance(item, (dict, list))]
        if strings:
            flat.setdefault(prefix or "non_field_errors", []).extend(strings)
        for index, item in enumerate(detail):
            if isinstance(item, (dict, list)) and item:
                for field, messages in flatten_field_errors(item, f"{prefix}.{index}" if prefix else str(index)).items():
                    flat.setdefault(field, []).extend(messages)
    else:
        flat.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return flat


def api_exception_handler(exc: Exception, context: dict) -> Any:
    """DRF ``EXCEPTION_HANDLER``: domain errors and DRF errors in one JSON shape."""
    exc = _as_api_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "detail": "Some fields are not valid.",
            "code": "invalid",
            "errors": flatten_field_errors(exc.detail),
        }
    else:
        detail = getattr(exc, "detail", None)
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        response.data = {
            "detail": str(detail) if detail is not None else response.status_text,
            "code": codes if isinstance(codes, str) else "error",
        }
        if getattr(exc, "current_plan_hash", None) is not None:
            response.data["current_plan_hash"] = exc.current_plan_hash
        if response.status_code == 400:
            # A body that could not be read at all: no field to name.
            response.data["errors"] = {}
    return response
