"""The audit trail is append-only at the database, and tampering behind its back is found."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from requests_app.models import AuditEvent
from requests_app.services import access_request_cancel, access_request_reject

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger tests speak Postgres")


@pytest.fixture
def trail(cast, enqueued) -> list[AuditEvent]:
    """Five real events from the services."""
    for _ in range(3):
        access_request_cancel(request_id=cast.request().pk, user=cast.requester, source_ip="10.0.0.1")
    access_request_reject(request_id=cast.request().pk, user=cast.approver, comment="no")
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == 5
    return events


def _behind_the_triggers_back(sql: str, params) -> None:
    with connection.cursor() as cursor:
        # Django's foreign keys are deferred; ALTER TABLE refuses to run with their checks pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE requests_app_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE requests_app_auditevent ENABLE TRIGGER USER")


def test_the_database_refuses_update_and_delete(trail):
    victim = trail[1]
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            AuditEvent.objects.filter(pk=victim.pk).update(actor_label="someone-else")
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            AuditEvent.objects.filter(pk=victim.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE requests_app_auditevent SET details = '{}'::jsonb")
    assert AuditEvent.objects.get(pk=victim.pk).actor_label == victim.actor_label
    assert AuditEvent.objects.count() == 5


def test_an_intact_chain_verifies_with_exit_code_zero(trail, capsys):
    call_command("verify_audit_chain")
    assert "5 events" in capsys.readouterr().out


def test_a_row_altered_behind_the_triggers_back_is_named(trail):
    victim = trail[2]
    _behind_the_triggers_back(
        "UPDATE requests_app_auditevent SET details = jsonb_set(details, '{comment}', '\"approved\"') WHERE id = %s",
        [victim.pk],
    )
    with pytest.raises(CommandError) as broken:
        call_command("verify_audit_chain")
    assert broken.value.returncode != 0
    assert f"event {victim.pk}:" in str(broken.value)
    assert "hash does not match the event's contents" in str(broken.value)


def test_a_deleted_row_is_found_at_the_gap_it_leaves(trail):
    victim, after = trail[2], trail[3]
    _behind_the_triggers_back("DELETE FROM requests_app_auditevent WHERE id = %s", [victim.pk])
    with pytest.raises(CommandError) as broken:
        call_command("verify_audit_chain")
    message = str(broken.value)
    assert broken.value.returncode != 0
    assert f"event {after.pk}:" in message
    assert f"hash of event {trail[1].pk}" in message
    assert "deleted" in message


def test_a_rewritten_row_with_a_recomputed_hash_still_breaks_the_next_link(trail):
    from requests_app.audit import chain_hash

    victim, after = trail[1], trail[2]
    victim.actor_label = "mallory"
    forged = chain_hash(victim.prev_hash, victim)
    _behind_the_triggers_back(
        "UPDATE requests_app_auditevent SET actor_label = %s, hash = %s WHERE id = %s", ["mallory", forged, victim.pk]
    )
    with pytest.raises(CommandError) as broken:
        call_command("verify_audit_chain")
    assert f"event {after.pk}:" in str(broken.value)
