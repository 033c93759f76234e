"""Single sign-on users map to portal users by user name.

Accounts list their approvers and requesters by user name, so an SSO login
must land on the user of that name: the provider's ``preferred_username``
claim, else the e-mail address. (The library's default would create users
named by a hash of the e-mail, whom no account could list.)
"""
from __future__ import annotations

from mozilla_django_oidc.auth import OIDCAuthenticationBackend


def username_from_claims(claims: dict) -> str:
    return (claims.get("preferred_username") or claims.get("email") or "").strip()


class PortalOIDCBackend(OIDCAuthenticationBackend):
    def verify_claims(self, claims) -> bool:
        return bool(username_from_claims(claims)) and super().verify_claims(claims)

    def filter_users_by_claims(self, claims):
        username = username_from_claims(claims)
        if not username:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(**{self.UserModel.USERNAME_FIELD: username})

    def create_user(self, claims):
        return self.UserModel.objects.create_user(
            username_from_claims(claims),
            email=claims.get("email", ""),
            first_name=claims.get("given_name", ""),
            last_name=claims.get("family_name", ""),
        )
