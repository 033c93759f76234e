"""The benchmarks' own database: dropped, created and migrated at every run."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# A name that says what the database is for; the bench never drops another.
REQUIRED_SUFFIX = "bench"


def recreate(url: str) -> None:
    """Drop and create the database named in ``url`` (its name must end in "bench")."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.endswith(REQUIRED_SUFFIX):
        raise ValueError(f"refusing to drop database {name!r}: a benchmark database's name ends in {REQUIRED_SUFFIX!r}")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
