"""Where a login attempt comes from, for the lockout by address (django-axes).

Directly reached, it is the connection's address. Behind proxies that each
append the address they were reached from to ``X-Forwarded-For``
(``PORTAL_PROXY_COUNT`` of them), it is the one the outermost of those
proxies saw: the entries further left are whatever the client sent and are
not trusted. Counting the proxy's own address would lock everyone out at once.
"""
from __future__ import annotations

from django.conf import settings


def client_ip(request) -> str | None:
    """The address of the client that sent ``request``."""
    proxies = settings.PORTAL_PROXY_COUNT
    if proxies > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR") or None


def lockout_parameters(request_or_attempt, credentials=None) -> list[str]:
    """What a failure counts against: the user name tried (when there is one) and,
    separately, the address. A login without a user name (the single sign-on
    callback) counts only against its address; counting it against "no name"
    would let failures from anywhere lock every such login out at once."""
    from axes.helpers import get_client_username
    from axes.models import AccessBase

    if isinstance(request_or_attempt, AccessBase):
        username = request_or_attempt.username
    else:
        username = get_client_username(request_or_attempt, credentials)
    return ["username", "ip_address"] if username else ["ip_address"]
