"""API token authentication: django-rest-knox's, with the portal's additions.

- The signed-in user carries the token it came with (``user.api_token``, read
  through ``models.api_token_in_use``), the way Django's ``authenticate``
  marks ``user.backend``: the audit trail names the token that made a decision,
  and a token cannot be used to mint another token.
- A header that is not UTF-8 is an invalid token (401), not a server error.
"""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from rest_framework import exceptions


class ApiTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        user, auth_token = super().authenticate_credentials(token)
        user.api_token = auth_token
        return user, auth_token


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The schema's name and shape for it stay those of DRF's token scheme (``tokenAuth``)."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'A personal API token, sent as "Token <token>". Tokens expire and can be revoked.',
        }
