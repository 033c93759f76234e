"""Lifting a login lockout.

Logins (the portal's page, Django admin, the single sign-on callback) are
locked out by django-axes after repeated failures, per user name and per
address. Lifting a lockout before it cools off is an administrator's
decision and goes into the audit trail; this service is the one way the
portal does it (the admin action and ``manage.py unlock_login`` call it).
"""
from __future__ import annotations

from axes.utils import reset
from django.db import transaction

from requests_app import permissions
from requests_app.audit import record_event
from requests_app.errors import NotAllowed, ValidationFailed

USERNAME_MAX = 150
ADDRESS_MAX = 45  # an IPv6 address in text


def login_lockout_reset(
    *,
    actor,
    username: str = "",
    ip_address: str = "",
    source_ip: str | None = None,
    actor_label: str | None = None,
) -> int:
    """Forget the failed logins of ``username`` and/or from ``ip_address``, lifting
    their lockout; returns how many recorded attempts were cleared.

    ``actor`` is the administrator doing it; None means an operator at the
    server's console, named by ``actor_label``.
    """
    if actor is not None and not permissions.can_unlock_logins(actor):
        raise NotAllowed("Only administrators may lift a login lockout.")
    username, ip_address = (username or "").strip(), (ip_address or "").strip()
    errors: dict[str, list[str]] = {}
    if not username and not ip_address:
        errors["username"] = ["Name a user name, an address, or both."]
    if len(username) > USERNAME_MAX:
        errors["username"] = [f"Must be at most {USERNAME_MAX} characters."]
    if len(ip_address) > ADDRESS_MAX:
        errors["ip_address"] = [f"Must be at most {ADDRESS_MAX} characters."]
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        # Separately: a lockout by user name holds whatever the address, and one by address whatever the name.
        cleared = (reset(username=username) if username else 0) + (reset(ip=ip_address) if ip_address else 0)
        record_event(
            action="login.unlocked",
            actor=actor,
            actor_label=actor_label if actor is None else None,
            source_ip=source_ip,
            details={"username": username, "ip_address": ip_address, "attempts_cleared": cleared},
        )
    return cleared
