"""Names a grant chooses: engine, endpoint identifier, role name, region, account.

AWS checks most of these only when the call is made (botocore validates
minimum lengths at best), so a bad name would surface halfway through a grant.
Checking them up front lets the request form name the field and the rule.
"""
from __future__ import annotations

import hashlib
import re

from provisioning.arns import check_account_id, check_region, partition_of_region
from provisioning.errors import InvalidInput

# DMS engine name -> the CreateEndpoint settings object that carries the secret.
ENGINES: dict[str, str] = {
    "mysql": "MySQLSettings",
    "mariadb": "MySQLSettings",
    "aurora": "MySQLSettings",
    "postgres": "PostgreSQLSettings",
    "aurora-postgresql": "PostgreSQLSettings",
    "oracle": "OracleSettings",
    "sqlserver": "MicrosoftSQLServerSettings",
    "sybase": "SybaseSettings",
    "db2": "IBMDb2Settings",
    "mongodb": "MongoDbSettings",
    "docdb": "DocDbSettings",
    "redshift": "RedshiftSettings",
}

# CreateEndpoint refuses DatabaseName for these engines.
MYSQL_FAMILY = frozenset(name for name, key in ENGINES.items() if key == "MySQLSettings")

ENDPOINT_TYPES = ("source", "target")

ENDPOINT_IDENTIFIER_MAX = 255
ROLE_NAME_MAX = 64
ROLE_NAME_PREFIX = "dms-secret-"

_ENDPOINT_ID_CHARS = re.compile(r"[A-Za-z0-9-]+")
_ROLE_NAME_RE = re.compile(r"[A-Za-z0-9_+=,.@-]+")


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    return value


def validate_engine(value: object, *, field: str = "engine") -> str:
    """Return ``value`` if it is one of the DMS engine names in ``ENGINES``."""
    text = _require_str(value, field)
    if text not in ENGINES:
        raise InvalidInput(field, f"must be one of {', '.join(ENGINES)} (got {text!r})")
    return text


def validate_endpoint_type(value: object, *, field: str = "endpoint_type") -> str:
    """Return ``value`` if it is ``source`` or ``target``."""
    text = _require_str(value, field)
    if text not in ENDPOINT_TYPES:
        raise InvalidInput(field, f"must be source or target (got {text!r})")
    return text


def validate_endpoint_identifier(value: object, *, field: str = "endpoint_identifier") -> str:
    """Return ``value`` if it follows DMS's endpoint identifier rules.

    1..255 characters, starting with an ASCII letter, only ASCII letters,
    digits and hyphens, no two hyphens in a row and no hyphen at the end.
    """
    text = _require_str(value, field)
    if not text:
        raise InvalidInput(field, "must not be empty")
    if len(text) > ENDPOINT_IDENTIFIER_MAX:
        raise InvalidInput(field, f"must be at most {ENDPOINT_IDENTIFIER_MAX} characters (got {len(text)})")
    if not _ENDPOINT_ID_CHARS.fullmatch(text):
        bad = next(ch for ch in text if not (ch.isascii() and (ch.isalnum() or ch == "-")))
        raise InvalidInput(
            field, f"must use only ASCII letters, digits and hyphens (found {bad!r} U+{ord(bad):04X})"
        )
    if not ("a" <= text[0].lower() <= "z"):
        raise InvalidInput(field, "must start with a letter")
    if text.endswith("-"):
        raise InvalidInput(field, "must not end with a hyphen")
    if "--" in text:
        raise InvalidInput(field, "must not contain two hyphens in a row (--)")
    return text


def validate_role_name(value: object, *, field: str = "role_name") -> str:
    """Return ``value`` if it is a valid IAM role name: 1..64 of ASCII ``[\\w+=,.@-]``."""
    text = _require_str(value, field)
    if not text:
        raise InvalidInput(field, "must not be empty")
    if len(text) > ROLE_NAME_MAX:
        raise InvalidInput(field, f"must be at most {ROLE_NAME_MAX} characters (got {len(text)})")
    if not _ROLE_NAME_RE.fullmatch(text):
        bad = next(ch for ch in text if not (ch.isascii() and (ch.isalnum() or ch in "_+=,.@-")))
        raise InvalidInput(
            field,
            f"must use only ASCII letters, digits and _+=,.@- (found {bad!r} U+{ord(bad):04X})",
        )
    return text


def derive_role_name(endpoint_identifier: str) -> str:
    """The default role name for an endpoint: ``dms-secret-<identifier>``.

    Identifiers too long for IAM's 64-character limit are cut and given a
    short hash of the whole identifier, so two long identifiers sharing a
    prefix still get different roles.
    """
    identifier = validate_endpoint_identifier(endpoint_identifier)
    name = ROLE_NAME_PREFIX + identifier
    if len(name) <= ROLE_NAME_MAX:
        return name
    digest = hashlib.sha256(identifier.encode()).hexdigest()[:8]
    room = ROLE_NAME_MAX - len(ROLE_NAME_PREFIX) - 1 - len(digest)
    return validate_role_name(f"{ROLE_NAME_PREFIX}{identifier[:room].rstrip('-')}-{digest}")


def validate_region(value: object, *, field: str = "region", partition: str | None = None) -> str:
    """Return ``value`` if it is a region name; with ``partition``, also in that partition."""
    text = check_region(value, field)
    if partition is not None and partition_of_region(text) != partition:
        raise InvalidInput(
            field, f"region {text} belongs to partition {partition_of_region(text)}, not {partition}"
        )
    return text


def validate_account_id(value: object, *, field: str = "account_id") -> str:
    """Return ``value`` if it is exactly 12 ASCII digits."""
    return check_account_id(value, field)
