"""What the services raise when they refuse something.

Each error knows the HTTP status the API answers with, so the API, the pages
and the management commands report the same refusal the same way.
"""
from __future__ import annotations


class DomainError(Exception):
    """Base class of every refusal a service can give a caller."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationFailed(DomainError):
    """Bad input: ``errors`` maps each field to its messages (400)."""

    status_code = 400

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = {field: list(messages) for field, messages in errors.items() if messages}
        summary = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in self.errors.items())
        super().__init__(summary or "invalid input")


class NotAllowed(DomainError):
    """The caller may see the thing but may not do this to it (403)."""

    status_code = 403


class NotFoundForUser(DomainError):
    """The thing does not exist, or the caller may not see it (404): the two
    look the same from outside, so nobody can probe for other people's requests."""

    status_code = 404

    def __init__(self, message: str = "Not found."):
        super().__init__(message)


class InvalidTransition(DomainError):
    """The request's current state does not allow this action (409)."""

    status_code = 409


class PlanChanged(InvalidTransition):
    """The approver decided on a plan that is no longer the request's (409):
    ``current_plan_hash`` is the plan they must look at again."""

    def __init__(self, current_plan_hash: str):
        super().__init__("The plan changed since you opened it: review the new plan and approve again.")
        self.current_plan_hash = current_plan_hash


class IdempotencyConflict(DomainError):
    """The idempotency key was already used with a different body (409)."""

    status_code = 409


class SsoLoginRefused(DomainError):
    """A single sign-on identity may not sign in as any portal user (403).

    ``message`` is for the person at the login page; ``reason`` is a short
    code for the log.
    """

    status_code = 403

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason
