"""Single sign-on (OpenID Connect) through mozilla-django-oidc.

The library runs the authorization-code flow and checks the id token's
signature, expiry and nonce; this backend also checks its issuer and
audience, then asks ``services.sso_login`` whom the identity ``(iss, sub)``
signs in as. The claims a provider user can set (``preferred_username``,
``email``) never pick an existing portal user: see requests_app/services/sso.py.
A refusal is shown on the login page.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView

from requests_app import services
from requests_app.errors import SsoLoginRefused

logger = logging.getLogger(__name__)

NOT_SIGNED_IN = "Single sign-on did not sign you in. Try again, or ask a portal administrator."
# Where the backend leaves a refusal's message for the callback view.
_REFUSAL_ATTRIBUTE = "sso_refusal"


def _refused(reason: str) -> SsoLoginRefused:
    # Only the reason is logged: never a token, a code or a claim.
    logger.warning("single sign-on refused (%s)", reason)
    return SsoLoginRefused(NOT_SIGNED_IN, reason=reason)


class PortalOIDCBackend(OIDCAuthenticationBackend):
    def get_token(self, payload):
        token_info = super().get_token(payload)
        # Kept (encrypted) with the identity, for an operator's re-sync of its groups.
        self._refresh_token = token_info.get("refresh_token") or ""
        return token_info

    def get_or_create_user(self, access_token, id_token, payload):
        try:
            issuer, subject = self._identity(payload)
            claims = self.get_userinfo(access_token, id_token, payload)
            if claims.get("sub") != subject:
                # OpenID Connect Core 5.3.2: the user info is about the id token's subject, or is not used.
                raise _refused("userinfo_subject_mismatch")
            groups_claim = getattr(settings, "OIDC_GROUPS_CLAIM", "groups")
            if groups_claim and groups_claim not in claims and groups_claim in payload:
                # Some providers put the groups in the (verified) id token only.
                claims = {**claims, groups_claim: payload[groups_claim]}
            return services.sso_login(
                issuer=issuer, subject=subject, claims=claims, source_ip=self.request.META.get("REMOTE_ADDR") or None,
                refresh_token=getattr(self, "_refresh_token", ""),
            )
        except SsoLoginRefused as refusal:
            setattr(self.request, _REFUSAL_ATTRIBUTE, refusal.message)
            return None

    def _identity(self, payload: dict) -> tuple[str, str]:
        issuer, subject, audience = payload.get("iss"), payload.get("sub"), payload.get("aud")
        if issuer != settings.OIDC_OP_ISSUER:
            raise _refused("wrong_issuer")
        if self.OIDC_RP_CLIENT_ID not in (audience if isinstance(audience, list) else [audience]):
            raise _refused("wrong_audience")
        if not isinstance(subject, str) or not subject:
            raise _refused("no_subject")
        return issuer, subject


class PortalOIDCCallbackView(OIDCAuthenticationCallbackView):
    """Back on the login page, say why single sign-on did not sign the person in."""

    def login_failure(self):
        messages.error(self.request, getattr(self.request, _REFUSAL_ATTRIBUTE, None) or NOT_SIGNED_IN)
        return super().login_failure()


class GroupsResyncUnavailable(Exception):
    """The provider cannot be asked now; the groups follow at the next login."""


def userinfo_by_refresh_token(refresh_token: str) -> tuple[dict, str]:
    """The provider's current user info for the holder of ``refresh_token``,
    and the refresh token to keep (providers may rotate it). Raises
    GroupsResyncUnavailable when there is none or the provider refuses it."""
    if not refresh_token:
        raise GroupsResyncUnavailable("no refresh token is stored (the provider gave none at the last login)")
    backend = PortalOIDCBackend()
    try:
        token_info = backend.get_token(
            {
                "client_id": backend.OIDC_RP_CLIENT_ID,
                "client_secret": backend.OIDC_RP_CLIENT_SECRET,
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
            }
        )
        access_token = token_info.get("access_token")
        if not access_token:
            raise GroupsResyncUnavailable("the provider gave no access token for the stored refresh token")
        claims = backend.get_userinfo(access_token, None, None)
    except GroupsResyncUnavailable:
        raise
    except Exception as error:  # HTTP errors, refused or expired tokens: say which, never the token
        raise GroupsResyncUnavailable(f"the provider refused the stored refresh token ({type(error).__name__})") from None
    return claims, token_info.get("refresh_token") or refresh_token
