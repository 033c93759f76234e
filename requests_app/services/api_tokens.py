"""Personal API tokens: made by their owner, revoked by the owner or an administrator.

The token itself is handed back once, by ``api_token_create``, and kept
nowhere: the database holds knox's SHA-512 digest and the short lookup key
(the prefix and the next 9 characters). The audit trail names a token by its
id and name only.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from requests_app import permissions
from requests_app.audit import record_event
from requests_app.errors import NotAllowed, NotFoundForUser, ValidationFailed
from requests_app.models import API_TOKEN_NAME_MAX_LENGTH, ApiToken, api_token_name_validator

# Each authentication walks the owner's tokens (knox drops the expired ones
# then), so their number is kept small.
MAX_TOKENS_PER_USER = 20
NOT_WITH_A_TOKEN = "Tokens are made by their owner, signed in with a password or single sign-on, not with a token."


def _name_errors(name) -> list[str]:
    if not isinstance(name, str) or not name:
        return ["Give the token a name."]
    if len(name) > API_TOKEN_NAME_MAX_LENGTH:
        return [f"At most {API_TOKEN_NAME_MAX_LENGTH} characters."]
    try:
        api_token_name_validator(name)
    except ValidationError as error:
        return list(error.messages)
    return []


def _expiry_errors(days) -> list[str]:
    limit = settings.API_TOKEN_MAX_EXPIRY_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= limit:
        return [f"A whole number of days from 1 to {limit}."]
    return []


def api_token_create(
    *,
    user,
    name: str,
    expires_days: int | None = None,
    source_ip: str | None = None,
    console_label: str | None = None,
) -> tuple[ApiToken, str]:
    """Make a token for ``user``; return it with the token text, shown this once.

    ``user`` is the person signed in, making a token for themselves: no entry
    point lets anyone make one for another person. The one exception is an
    operator at the server's console (``manage.py create_api_token``, named by
    ``console_label``), who makes tokens for service accounts.
    """
    if console_label is None and not permissions.can_create_api_token(user):
        raise NotAllowed(NOT_WITH_A_TOKEN)
    if expires_days is None:
        expires_days = settings.API_TOKEN_DEFAULT_EXPIRY_DAYS
    problems = {"name": _name_errors(name), "expires_days": _expiry_errors(expires_days)}
    if console_label is not None and not permissions.is_active_user(user):
        problems["user"] = ["This user is deactivated."]
    if any(problems.values()):
        raise ValidationFailed(problems)
    with transaction.atomic():
        # One at a time per owner, so the count below holds.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        ApiToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
        if ApiToken.objects.filter(user=user).count() >= MAX_TOKENS_PER_USER:
            raise ValidationFailed({"name": [f"You have {MAX_TOKENS_PER_USER} tokens already; revoke one first."]})
        if ApiToken.objects.filter(user=user, name=name).exists():
            raise ValidationFailed({"name": [f"You already have a token named “{name}”."]})
        try:
            with transaction.atomic():
                token, text = ApiToken.objects.create(user=user, name=name, expiry=timedelta(days=expires_days))
        except IntegrityError:
            raise ValidationFailed({"name": [f"You already have a token named “{name}”."]}) from None
        record_event(
            action="token.created",
            actor=user if console_label is None else None,
            actor_label=console_label,
            source_ip=source_ip,
            details={
                "token_id": token.pk,
                "name": token.name,
                "owner": user.get_username(),
                "expires_at": token.expiry.isoformat(),
            },
        )
    return token, text


def api_token_revoke(*, user, token_id: int, source_ip: str | None = None) -> ApiToken:
    """Revoke (delete) a token: its next use is refused with 401."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(pk=token_id).first()
        if token is None or not permissions.can_see_api_token(user, token):
            raise NotFoundForUser("No such token.")
        if not permissions.can_revoke_api_token(user, token):
            raise NotAllowed("You may not revoke this token.")
        owner = get_user_model().objects.get(pk=token.user_id)
        record_event(
            action="token.revoked",
            actor=user,
            source_ip=source_ip,
            details={"token_id": token.pk, "name": token.name, "owner": owner.get_username()},
        )
        token.delete()
    return token
