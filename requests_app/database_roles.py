"""The two database roles of a Postgres deployment.

The owner role (``MIGRATION_DATABASE_URL``) owns the tables and runs the
migrations. The runtime role (``DATABASE_URL``: web, workers, beat) may read
and write the portal's tables but only SELECT and INSERT on the audit trail:
it owns nothing, so it can neither UPDATE, DELETE nor TRUNCATE audit events
nor disable the triggers that refuse those.
"""
from __future__ import annotations

import re
from contextlib import contextmanager

import dj_database_url
from django.db import connections, transaction

AUDIT_TABLE = "requests_app_auditevent"
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RoleError(Exception):
    """The runtime role cannot be set up as asked."""


def _ident(name: str) -> str:
    if not _ROLE_NAME.fullmatch(name):
        raise RoleError(f"{name!r} is not a plain role name (lower-case letters, digits, _)")
    return f'"{name}"'


def grant_runtime_role(role: str, *, password: str | None = None, using: str = "default") -> bool:
    """Create ``role`` if it does not exist (with ``password``, able to log in) and
    grant it what the running portal needs; returns whether it was created.

    Runs as the owner of the tables (the migration role). Grants on every
    table and sequence of the schema and, through default privileges, on
    those the owner creates later; on the audit table only SELECT and INSERT.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise RoleError("database roles exist on Postgres only")
    quoted = _ident(role)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, current_database(), current_schema(), pg_get_serial_sequence(%s, 'id'), "
            "(SELECT tableowner FROM pg_tables WHERE tablename = %s AND schemaname = current_schema())",
            [AUDIT_TABLE, AUDIT_TABLE],
        )
        owner, database, schema, audit_sequence, audit_owner = cursor.fetchone()
        if audit_sequence is None:
            raise RoleError("the audit table does not exist yet: run the migrations first")
        if role in (owner, audit_owner):
            raise RoleError(f"{role} owns the tables; the runtime role must be another role")
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        created = row is None
        if created:
            if password:
                cursor.execute(f"CREATE ROLE {quoted} LOGIN PASSWORD %s", [password])
            else:
                cursor.execute(f"CREATE ROLE {quoted} LOGIN")
        elif row[0]:
            raise RoleError(f"{role} is a superuser, which no privilege binds")
        cursor.execute("SELECT pg_has_role(%s, %s, 'USAGE')", [role, audit_owner])
        if cursor.fetchone()[0]:
            raise RoleError(f"{role} is a member of {audit_owner}, the audit table's owner")
        schema_q, database_q = connection.ops.quote_name(schema), connection.ops.quote_name(database)
        for statement in (
            f"GRANT CONNECT ON DATABASE {database_q} TO {quoted}",
            f"GRANT USAGE ON SCHEMA {schema_q} TO {quoted}",
            f"REVOKE CREATE ON SCHEMA {schema_q} FROM {quoted}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema_q} TO {quoted}",
            f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema_q} TO {quoted}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_q} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_q} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {quoted}",
            # The audit trail: read and append, nothing else; its id sequence
            # only advances through INSERT (no setval).
            f"REVOKE ALL ON {schema_q}.{AUDIT_TABLE} FROM {quoted}",
            f"GRANT SELECT, INSERT ON {schema_q}.{AUDIT_TABLE} TO {quoted}",
            f"REVOKE ALL ON SEQUENCE {audit_sequence} FROM {quoted}",
            f"GRANT USAGE ON SEQUENCE {audit_sequence} TO {quoted}",
        ):
            cursor.execute(statement)
    return created


def runtime_role_of(database_url: str) -> tuple[str, str | None]:
    """The user and password ``DATABASE_URL`` connects with."""
    parsed = dj_database_url.parse(database_url)
    return parsed.get("USER") or "", parsed.get("PASSWORD") or None


@contextmanager
def connected_as_owner(migration_database_url: str, using: str = "default"):
    """Run the block with connection ``using`` logged in as the owner role of
    ``migration_database_url``, which must name the same database."""
    connection = connections[using]
    owner = dj_database_url.parse(migration_database_url)
    current = connection.settings_dict
    same = (owner.get("ENGINE"), owner.get("HOST") or "", str(owner.get("PORT") or ""), owner.get("NAME")) == (
        current["ENGINE"], current.get("HOST") or "", str(current.get("PORT") or ""), current["NAME"]
    )
    if not same:
        raise RoleError("MIGRATION_DATABASE_URL must name the same database as DATABASE_URL (only the role differs)")
    connection.close()
    connection.settings_dict = {**current, "USER": owner.get("USER", ""), "PASSWORD": owner.get("PASSWORD", "")}
    try:
        yield connection
    finally:
        connection.close()
        connection.settings_dict = current
