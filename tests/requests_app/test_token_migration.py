"""The move off DRF's authtoken: its table of clear-text keys is dropped, and
its migrations forgotten (the tokens are not converted: they never expired)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

import requests_app

pytestmark = pytest.mark.django_db


def _tokens_migration():
    # Found by its name, whatever number it is given when the migrations are chained.
    (path,) = Path(requests_app.__file__).parent.joinpath("migrations").glob("*_tokens.py")
    return importlib.import_module(f"requests_app.migrations.{path.stem}")


def test_an_existing_authtoken_table_and_its_migrations_are_dropped():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp, user_id integer)")
        cursor.execute("INSERT INTO authtoken_token VALUES ('13d127d7b329c9a57fe8d16e915b8bdd312f3bfa', NULL, 1)")
    recorder = MigrationRecorder(connection)
    recorder.record_applied("authtoken", "0004_alter_tokenproxy_options")
    assert "authtoken_token" in connection.introspection.table_names()

    with connection.schema_editor() as editor:
        _tokens_migration().drop_authtoken_tokens(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not recorder.migration_qs.filter(app="authtoken").exists()


def test_a_database_that_never_had_authtoken_migrates_too():
    with connection.schema_editor() as editor:
        _tokens_migration().drop_authtoken_tokens(apps, editor)
    assert "requests_app_apitoken" in connection.introspection.table_names()
