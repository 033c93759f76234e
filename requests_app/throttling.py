"""Rate limits: per user on the whole API, and a stricter one on what makes the portal call AWS.

Every call to a route that makes the portal read AWS with its provisioner
roles (filing, re-running preflight, the live policies, repair, retry) draws
from one budget per user, ``PORTAL_AWS_RATE``, whether it comes through the
API or the pages. Over it the answer is 429 with ``Retry-After`` and no AWS
call is made. The counts live in Django's cache (``CACHE_URL``): with several
web processes the cache must be shared (Redis), or each process counts alone.
"""
from __future__ import annotations

import logging
import math

from django.conf import settings
from django.http import HttpResponse
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


class _OpenWhenTheCacheIsDown:
    """A cache that cannot be reached (Redis down) lets calls through, logged: the
    portal keeps serving, and AWS and the workers are their own backstop."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as error:
            logger.warning("rate limit %s not applied: the cache could not be reached (%s)", self.scope, error)
            return True


class ApiUserThrottle(_OpenWhenTheCacheIsDown, UserRateThrottle):
    """Every API call, per user (per address for calls without a user): ``PORTAL_API_RATE``."""

    def get_rate(self) -> str | None:
        return settings.PORTAL_API_RATE or None


class AwsCallThrottle(_OpenWhenTheCacheIsDown, SimpleRateThrottle):
    """Calls that make the portal call AWS, per user: ``PORTAL_AWS_RATE``.

    An API view opts in with ``aws_call_methods`` (the HTTP methods that call
    AWS); the pages use ``aws_call_refusal``. A call that makes the portal
    read AWS for several grants (filing a multi-grant request: a preflight
    each) draws one per grant (``view.aws_call_weight(request)``), but never
    more than the whole budget, so it can always be made once the budget is full.
    """

    scope = "aws"

    def allow_request(self, request, view) -> bool:
        if self.rate is None or (key := self.get_cache_key(request, view)) is None:
            return True
        self.key = key
        weight = min(max(1, int(getattr(view, "aws_call_weight", lambda _: 1)(request))), self.num_requests)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) + weight > self.num_requests:
            return self.throttle_failure()
        self.history[:0] = [self.now] * weight
        self.cache.set(self.key, self.history, self.duration)
        return True

    def get_rate(self) -> str | None:
        return settings.PORTAL_AWS_RATE or None

    def get_cache_key(self, request, view) -> str | None:
        if request.method not in getattr(view, "aws_call_methods", ()):
            return None
        ident = request.user.pk if request.user and request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class _Page:
    aws_call_methods = ("GET", "POST")

    def __init__(self, weight: int):
        self.weight = weight

    def aws_call_weight(self, request) -> int:
        return self.weight


def aws_call_refusal(request, *, weight: int = 1) -> HttpResponse | None:
    """For a page about to call AWS (for ``weight`` grants): None while
    ``request.user`` is within the limit, else the 429 answer to give instead
    (the same budget as the API's)."""
    throttle = AwsCallThrottle()
    if throttle.allow_request(request, _Page(weight)):
        return None
    wait = max(1, math.ceil(throttle.wait() or 1))
    response = HttpResponse(
        f"Too many requests that make the portal call AWS. Try again in {wait} seconds.",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(wait)
    return response
