"""The Content-Security-Policy header on every response.

The portal serves all its scripts and styles itself (no CDN, no inline
script or style), so the policy allows nothing but its own origin. Django
5.2 has no Content-Security-Policy support of its own; the other security
headers come from Django's SecurityMiddleware and XFrameOptionsMiddleware
(see the security section of portal/settings.py).
"""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    """Adds ``settings.CONTENT_SECURITY_POLICY`` to every response that has none.

    Placed first, so responses that never reach the views (redirects to
    HTTPS, static files from WhiteNoise) carry it too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy:
            response.headers.setdefault("Content-Security-Policy", self.policy)
        return response
