"""The provider's people and what it says about them, read from the directory file at every use."""
import hmac
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from oauth2_provider.oauth2_validators import OAuth2Validator


def _person(login: str) -> dict | None:
    with open(settings.IDP_DIRECTORY) as handle:
        return json.load(handle).get(login)


class DirectoryBackend(BaseBackend):
    """Signs in the people of the directory with their password there."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        person = _person(username or "")
        if person is None or not hmac.compare_digest(person["password"], password or ""):
            return None
        user, _ = get_user_model().objects.get_or_create(username=username)
        return user

    def get_user(self, user_id):
        return get_user_model().objects.filter(pk=user_id).first()


class DirectoryValidator(OAuth2Validator):
    """Id token and user info carry the directory's claims, its ``sub`` included;
    ``groups`` (a list of group names) with the ``groups`` scope, as Okta,
    Keycloak and others send it."""

    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "groups"}

    def get_additional_claims(self, request):
        return dict(_person(request.user.get_username())["claims"])
