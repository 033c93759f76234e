"""The running portal's database role cannot rewrite, empty or unprotect the audit trail.

The suite connects as the superuser ``postgres``, which owns the tables (the
migration role). Each test creates the runtime role the way a deployment
does (``create_runtime_db_role``) and connects a second time as it.
"""
from __future__ import annotations

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from requests_app.audit import verify_chain
from requests_app.database_roles import RoleError, grant_runtime_role
from requests_app.models import AuditEvent, RequestState
from requests_app.services import access_request_approve, access_request_cancel, access_request_submit
from tests.aws_world import DATALAKE_ID

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="database roles are Postgres's"),
    pytest.mark.django_db(transaction=True),
]

ROLE = "portal_runtime_test"


@pytest.fixture
def runtime_role():
    call_command("create_runtime_db_role", ROLE, verbosity=0)
    yield ROLE
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
        cursor.execute(f'DROP OWNED BY "{ROLE}"')
        cursor.execute(f'DROP ROLE "{ROLE}"')


@pytest.fixture
def as_runtime(runtime_role):
    """A second connection to the test database, logged in as the runtime role."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or None, port=db["PORT"] or None, dbname=db["NAME"], user=runtime_role, autocommit=True
    ) as runtime:
        yield runtime


@pytest.fixture
def trail(cast, enqueued):
    for _ in range(3):
        access_request_cancel(request_id=cast.request().pk, user=cast.requester, source_ip="10.0.0.1")
    return list(AuditEvent.objects.order_by("id"))


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE requests_app_auditevent SET actor_label = 'mallory'", "permission denied"),
        ("DELETE FROM requests_app_auditevent", "permission denied"),
        ("TRUNCATE requests_app_auditevent", "permission denied"),
        ("ALTER TABLE requests_app_auditevent DISABLE TRIGGER USER", "must be owner"),
        ("ALTER TABLE requests_app_auditevent DISABLE TRIGGER audit_event_no_delete", "must be owner"),
        ("DROP TRIGGER audit_event_no_delete ON requests_app_auditevent", "must be owner"),
        ("SELECT setval(pg_get_serial_sequence('requests_app_auditevent', 'id'), 1)", "permission denied"),
        ("SET session_replication_role = replica", "permission denied"),
    ],
)
def test_the_runtime_role_cannot_touch_audit_events(trail, as_runtime, statement, refusal):
    with pytest.raises(psycopg.Error, match=refusal):
        as_runtime.execute(statement)
    assert list(AuditEvent.objects.order_by("id")) == trail
    assert [e.actor_label for e in AuditEvent.objects.order_by("id")] == [e.actor_label for e in trail]
    assert verify_chain().ok


def test_the_runtime_role_reads_and_appends(trail, as_runtime):
    assert as_runtime.execute("SELECT count(*) FROM requests_app_auditevent").fetchone() == (len(trail),)
    # Other tables stay writable: the portal updates requests, steps, users.
    as_runtime.execute("UPDATE requests_app_accessrequest SET justification = justification")


def test_the_portal_files_and_approves_as_the_runtime_role(cast, enqueued, portal_aws, runtime_role):
    world = portal_aws
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{runtime_role}"')
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == (runtime_role,)
    try:
        request = access_request_submit(
            requester=cast.requester, datalake_account_id=DATALAKE_ID, secret_arn=world.secret_arn, engine="mysql",
            endpoint_identifier="source-db-mysql", justification="Replicate orders into the lake.",
            replication_instance_arn=world.replication_instance_arn, source_ip="10.0.0.5",
        )
        approved = access_request_approve(
            request_id=request.pk, user=cast.approver, plan_hash=request.plan_hash, source_ip="10.0.0.7"
        )
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            AuditEvent.objects.filter(request=request).delete()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert approved.state == RequestState.APPROVED
    assert enqueued == [(request.pk, "grant")]
    actions = list(AuditEvent.objects.filter(request=request).values_list("action", flat=True))
    assert actions[0] == "request.submitted" and actions[-2:] == ["decision.approve", "request.approved"]
    assert verify_chain().ok


def test_the_trigger_refuses_truncate_even_to_the_owner(trail):
    with pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE requests_app_auditevent CASCADE")
    assert AuditEvent.objects.count() == len(trail)


def test_the_runtime_role_is_never_the_owner_or_a_superuser(db):
    with pytest.raises(RoleError, match="owns the tables"):
        grant_runtime_role(connection.settings_dict["USER"])
    with pytest.raises(CommandError, match="plain role name"):
        call_command("create_runtime_db_role", 'x"; DROP TABLE requests_app_auditevent; --')


def test_migrate_runs_as_the_owner_and_grants_the_runtime_role_of_database_url(trail, settings):
    """As in docker-compose: DATABASE_URL names the runtime role, MIGRATION_DATABASE_URL the owner."""
    db = connection.settings_dict
    owner = db["USER"]
    settings.MIGRATION_DATABASE_URL = f"postgres://{owner}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    connection.close()
    connection.settings_dict = {**db, "USER": ROLE}
    try:
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, count(*) FROM requests_app_auditevent GROUP BY 1")
            assert cursor.fetchone() == (ROLE, len(trail))
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE requests_app_auditevent")
    finally:
        connection.close()
        connection.settings_dict = db
        with connection.cursor() as cursor:
            cursor.execute(f'DROP OWNED BY "{ROLE}"')
            cursor.execute(f'DROP ROLE IF EXISTS "{ROLE}"')
    assert AuditEvent.objects.count() == len(trail)
