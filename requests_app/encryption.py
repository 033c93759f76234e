"""Values the portal keeps but never shows: encrypted at rest, keys from the environment.

``FIELD_ENCRYPTION_KEYS`` is a list of Fernet keys (``cryptography``'s
authenticated AES-CBC + HMAC tokens). The first key encrypts; every key
decrypts, so a key is rotated by putting a new one first, restarting, running
``manage.py rotate_field_encryption`` (which re-encrypts every value with the
first key) and then dropping the old one.

The keys are independent of ``SECRET_KEY`` on purpose: rotating the session
signing key must not make the stored external ids unreadable, and the
database alone (a dump, a backup) holds nothing usable without the keys.
"""
from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class FieldDecryptionError(ImproperlyConfigured):
    """A stored value none of FIELD_ENCRYPTION_KEYS opens: a key was dropped too early."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must hold at least one key")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        # Never echo the keys themselves.
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
        ) from None


def field_fernet() -> MultiFernet:
    """The MultiFernet of the configured keys (read at each call, so a changed setting counts)."""
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def check_keys(keys) -> None:
    """Raise ImproperlyConfigured unless ``keys`` is a usable non-empty key list."""
    _fernet(tuple(keys))


def encrypt(value: str) -> str:
    return field_fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return field_fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise FieldDecryptionError(
            "A stored encrypted value cannot be decrypted with any of FIELD_ENCRYPTION_KEYS"
        ) from None


def rotate(token: str) -> str:
    """The same value, encrypted again with the first key."""
    try:
        return field_fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise FieldDecryptionError(
            "A stored encrypted value cannot be decrypted with any of FIELD_ENCRYPTION_KEYS"
        ) from None


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; Python sees the plain text.

    The empty string is stored as is, so "is it set" needs no key. Tokens are
    randomised, so the column cannot be searched or compared in SQL: read the
    row and compare in Python.
    """

    description = "Text encrypted with FIELD_ENCRYPTION_KEYS"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)
