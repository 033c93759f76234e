"""The keyed audit chain, its checkpoints outside the database, and its incremental verification.

The hostile operator here has the database (as its superuser: triggers can be
turned off) but not AUDIT_CHAIN_KEYS.
"""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from prometheus_client import generate_latest

from requests_app.permissions import is_portal_admin
from requests_app.audit import LEGACY_KEY_ID, canonical_event, legacy_chain_hash, record_event, verify_chain
from requests_app.audit_checkpoints import CheckpointInvalid, checkpoint_from_json, sign_checkpoint
from requests_app.metrics import scrape_registry
from requests_app.models import AuditChainState, AuditEvent
from requests_app.services import access_request_cancel, access_request_reject
from requests_app.services.audit_chain import audit_chain_verify
from tests.factories import UserFactory

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the tampering speaks Postgres")

TEST_KEY = b"audit chain key of the test suite"


@pytest.fixture
def trail(cast, enqueued) -> list[AuditEvent]:
    """Five real events from the services."""
    for _ in range(3):
        access_request_cancel(request_id=cast.request().pk, user=cast.requester, source_ip="10.0.0.1")
    access_request_reject(request_id=cast.request().pk, user=cast.approver, comment="no")
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == 5
    return events


def _behind_the_triggers_back(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE requests_app_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE requests_app_auditevent ENABLE TRIGGER USER")


def _rehash_from(events: list[AuditEvent], index: int, *, key_id: str) -> None:
    """What an operator without the key can do: re-chain ``events[index:]`` with plain SHA-256."""
    prev = events[index - 1].hash if index else "0" * 64
    for event in events[index:]:
        event.refresh_from_db()
        event.key_id = key_id
        new_hash = legacy_chain_hash(prev, canonical_event(event))
        _behind_the_triggers_back(
            "UPDATE requests_app_auditevent SET prev_hash = %s, hash = %s, key_id = %s WHERE id = %s",
            [prev, new_hash, key_id, event.pk],
        )
        prev = new_hash


def _verify(*args) -> str:
    with pytest.raises(CommandError) as broken:
        call_command("verify_audit_chain", *args)
    assert broken.value.returncode != 0
    return str(broken.value)


# --- 2. The keyed chain --------------------------------------------------------


def test_each_event_is_an_hmac_under_the_chain_key_and_names_the_key(trail):
    for before, event in zip([None, *trail], trail):
        assert event.key_id == "test-1"
        assert event.prev_hash == (before.hash if before else "0" * 64)
        message = f"{event.prev_hash}\ntest-1\n{canonical_event(event)}".encode()
        assert event.hash == hmac.new(TEST_KEY, message, hashlib.sha256).hexdigest()
        assert event.hash != legacy_chain_hash(event.prev_hash, canonical_event(event))
    assert verify_chain().ok


def test_an_event_rewritten_and_rehashed_with_plain_sha256_is_found(trail):
    victim = trail[2]
    _behind_the_triggers_back(
        "UPDATE requests_app_auditevent SET details = jsonb_set(details, '{to_state}', '\"approved\"') WHERE id = %s",
        [victim.pk],
    )
    # Re-hashed under the key id it had, the rest of the trail re-chained after it.
    _rehash_from(trail, 2, key_id="test-1")
    assert f"event {victim.pk}: hash does not match" in _verify()
    # Marked as an event from before the keyed chain instead.
    _rehash_from(trail, 2, key_id=LEGACY_KEY_ID)
    assert f"event {victim.pk}: an unkeyed (sha256-legacy) event after keyed ones" in _verify()


def test_a_chain_forged_with_another_key_does_not_verify(trail):
    victim = trail[0]
    forged = hmac.new(b"x" * 32, f"{victim.prev_hash}\ntest-1\n{canonical_event(victim)}".encode(), hashlib.sha256)
    _behind_the_triggers_back("UPDATE requests_app_auditevent SET hash = %s WHERE id = %s", [forged.hexdigest(), victim.pk])
    assert f"event {victim.pk}: hash does not match" in _verify()


def test_a_new_key_signs_new_events_and_the_old_one_still_verifies_the_history(trail, settings, cast):
    settings.AUDIT_CHAIN_KEYS = [("test-2", b"the next audit chain key, rotated"), ("test-1", TEST_KEY)]
    access_request_cancel(request_id=cast.request().pk, user=cast.requester)
    newest = AuditEvent.objects.order_by("-id").first()
    assert (newest.key_id, newest.prev_hash) == ("test-2", trail[-1].hash)
    assert verify_chain().ok and verify_chain().checked == 6
    # Dropping a key that history still names is an error, not a silent pass.
    settings.AUDIT_CHAIN_KEYS = [("test-2", b"the next audit chain key, rotated")]
    assert f"event {trail[0].pk}: the event's key id 'test-1' is not among AUDIT_CHAIN_KEYS" in _verify()


def test_events_from_before_the_keyed_chain_verify_only_as_its_prefix(db, django_db_blocker):
    from django.db import transaction
    from django.utils import timezone

    prev = "0" * 64
    for n in range(3):
        event = AuditEvent(created_at=timezone.now(), actor_label="old", action="request.submitted",
                           details={"n": n}, key_id=LEGACY_KEY_ID, prev_hash=prev)  # fmt: skip
        event.hash = prev = legacy_chain_hash(prev, canonical_event(event))
        event.save(force_insert=True)
    with transaction.atomic():
        record_event(action="request.cancelled", actor_label="new")
    assert verify_chain().ok and verify_chain().checked == 4
    late = AuditEvent(created_at=timezone.now(), actor_label="mallory", action="request.approved",
                      details={}, key_id=LEGACY_KEY_ID, prev_hash=AuditEvent.objects.order_by("-id").first().hash)  # fmt: skip
    late.hash = legacy_chain_hash(late.prev_hash, canonical_event(late))
    late.save(force_insert=True)
    report = verify_chain()
    assert (report.ok, report.first_broken_id) == (False, late.pk)
    assert "unkeyed" in report.reason


# --- 3. Checkpoints and incremental verification --------------------------------


def test_a_checkpoint_verifies_only_as_signed_with_the_chain_key(trail, settings):
    checkpoint = sign_checkpoint(verify_chain().last)
    assert checkpoint_from_json(checkpoint.to_json()) == checkpoint
    assert (checkpoint.last_event_id, checkpoint.count, checkpoint.last_event_hash) == (trail[-1].pk, 5, trail[-1].hash)
    shortened = {**checkpoint.as_dict(), "count": 3, "last_event_id": trail[2].pk, "last_event_hash": trail[2].hash}
    with pytest.raises(CheckpointInvalid, match="signature does not verify"):
        checkpoint_from_json(json.dumps(shortened))
    settings.AUDIT_CHAIN_KEYS = [("test-1", b"y" * 32)]
    with pytest.raises(CheckpointInvalid, match="signature does not verify"):
        checkpoint_from_json(checkpoint.to_json())


def test_the_newest_events_deleted_by_the_superuser_are_found(
    trail, tmp_path, capsys, django_capture_on_commit_callbacks
):
    admin = UserFactory(username="root", is_superuser=True, email="root@example.com")
    call_command("write_audit_checkpoint")
    (tmp_path / "checkpoint.json").write_text(capsys.readouterr().out)
    _behind_the_triggers_back("DELETE FROM requests_app_auditevent WHERE id >= %s", [trail[3].pk])

    assert verify_chain().ok  # the chain alone cannot tell: what is left is consistent
    assert "its tail was deleted" in _verify()
    assert "its tail was deleted" in _verify("--checkpoint", str(tmp_path / "checkpoint.json"))
    assert "3 events up to event" in _verify("--since-checkpoint")
    # The periodic check finds it too, says so, and tells the administrators once.
    with django_capture_on_commit_callbacks(execute=True):
        report, checkpoint = audit_chain_verify()
    assert (report.ok, report.first_broken_id, checkpoint) == (False, trail[-1].pk, None)
    administrators = sorted(u.email for u in get_user_model().objects.all() if is_portal_admin(u) and u.email)
    assert admin.email in administrators
    assert [sorted(m.to) for m in mail.outbox] == [administrators]
    assert "does not verify" in mail.outbox[0].subject
    assert f"event {trail[-1].pk}, verified before, is gone" in mail.outbox[0].body
    with django_capture_on_commit_callbacks(execute=True):
        audit_chain_verify()
    assert len(mail.outbox) == 1
    state = AuditChainState.objects.get()
    assert (state.ok, state.verified_through_id) == (False, trail[-1].pk)


def test_a_whole_trail_replaced_by_a_consistent_unkeyed_chain_is_found(trail, tmp_path, capsys):
    call_command("write_audit_checkpoint")
    (tmp_path / "checkpoint.json").write_text(capsys.readouterr().out)
    # Every event rewritten as if from before the keyed chain, one detail changed.
    _behind_the_triggers_back(
        "UPDATE requests_app_auditevent SET actor_label = 'mallory' WHERE id = %s", [trail[4].pk]
    )
    _rehash_from(trail, 0, key_id=LEGACY_KEY_ID)

    assert verify_chain().ok  # a plain SHA-256 chain is consistent by construction
    assert f"event {trail[4].pk} differs from the checkpoint" in _verify("--checkpoint", str(tmp_path / "checkpoint.json"))
    assert f"event {trail[4].pk} differs from the checkpoint" in _verify()
    assert "no longer has the hash it had" in _verify("--since-checkpoint")
    report, _ = audit_chain_verify()
    assert not report.ok and "no longer has the hash it had" in report.reason


def test_a_checkpoint_that_does_not_verify_is_refused(trail, tmp_path, capsys):
    call_command("write_audit_checkpoint")
    checkpoint = json.loads(capsys.readouterr().out)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**checkpoint, "count": checkpoint["count"] - 1}))
    assert "Checkpoint does not verify" in _verify("--checkpoint", str(forged))
    # A line of the JSON log holds a checkpoint too.
    line = tmp_path / "log-line.json"
    line.write_text(json.dumps({"level": "INFO", "message": "audit checkpoint", "audit_checkpoint": checkpoint}))
    call_command("verify_audit_chain", "--checkpoint", str(line))


def test_the_periodic_verification_reads_only_the_events_since_the_last_run(trail, cast, django_assert_max_num_queries):
    report, checkpoint = audit_chain_verify()
    assert report.ok and report.checked == 5 and checkpoint.last_event_id == trail[-1].pk
    # An old event altered without touching its hash: a full walk sees it,
    # the incremental one does not read it again (the checkpoints and
    # ``verify_audit_chain`` are the deep check).
    _behind_the_triggers_back("UPDATE requests_app_auditevent SET actor_label = 'x' WHERE id = %s", [trail[1].pk])
    access_request_cancel(request_id=cast.request().pk, user=cast.requester)
    report, checkpoint = audit_chain_verify()
    assert (report.ok, report.checked, checkpoint.count) == (True, 1, 6)
    assert not verify_chain().ok
    state = AuditChainState.objects.get()
    assert (state.ok, state.verified_through_id, state.verified_count) == (True, checkpoint.last_event_id, 6)


def test_metrics_show_how_far_the_chain_is_verified_and_whether_it_held(trail):
    def scraped() -> str:
        return generate_latest(scrape_registry()).decode()

    assert "portal_audit_chain_verified_through 0.0" in scraped()
    assert "portal_audit_chain_ok" not in scraped()
    audit_chain_verify()
    assert f"portal_audit_chain_verified_through {float(trail[-1].pk)}" in scraped()
    assert "portal_audit_chain_ok 1.0" in scraped()
    _behind_the_triggers_back("DELETE FROM requests_app_auditevent WHERE id = %s", [trail[-1].pk])
    audit_chain_verify()
    assert "portal_audit_chain_ok 0.0" in scraped()


def test_checkpoints_go_to_the_json_log_stream(trail, caplog):
    with caplog.at_level("INFO", logger="requests_app.audit.checkpoint"):
        call_command("write_audit_checkpoint", stdout=open("/dev/null", "w"))
    [record] = [r for r in caplog.records if r.name == "requests_app.audit.checkpoint"]
    assert checkpoint_from_json(json.dumps({"audit_checkpoint": record.audit_checkpoint})).count == 5


def test_beat_runs_the_verification_at_an_interval(settings, trail):
    from requests_app.workflow.tasks import verify_and_checkpoint

    entry = settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]
    assert entry["task"] == verify_and_checkpoint.name == "audit.verify_and_checkpoint"
    assert entry["schedule"] == settings.AUDIT_CHECKPOINT_INTERVAL_SECONDS
    assert verify_and_checkpoint() is True
    assert AuditChainState.objects.get().last_checkpoint["count"] == 5


def test_the_audit_page_shows_when_the_chain_was_last_verified_and_how_it_went(trail, client, cast):
    from django.urls import reverse

    client.force_login(cast.staff)
    assert "has not been verified yet" in client.get(reverse("web:audit_log")).content.decode()
    audit_chain_verify()
    page = client.get(reverse("web:audit_log")).content.decode()
    checked = AuditChainState.objects.get().checked_at
    assert f"Chain verified</span> through event #{trail[-1].pk}" in page
    assert f"last checked {checked:%Y-%m-%d %H:%M:%S}" in page
    _behind_the_triggers_back("DELETE FROM requests_app_auditevent WHERE id = %s", [trail[-1].pk])
    audit_chain_verify()
    page = client.get(reverse("web:audit_log")).content.decode()
    assert f"Chain broken</span> at event #{trail[-1].pk}" in page
    assert "is gone" in page


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_events_written_before_it_verifiable():
    from django.db import transaction
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    before, keyed = [("requests_app", "0009_applyplan")], [("requests_app", "0010_audit_keyed_chain")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    OldEvent = executor.loader.project_state(before).apps.get_model("requests_app", "AuditEvent")
    prev = "0" * 64
    for n in range(3):  # as the plain SHA-256 chain wrote them
        event = OldEvent(created_at=timezone.now(), actor_label="old", action="request.submitted", details={"n": n})
        event.prev_hash, event.hash = prev, legacy_chain_hash(prev, canonical_event(event))
        event.save(force_insert=True)
        prev = event.hash
    MigrationExecutor(connection).migrate(keyed)
    try:
        assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {LEGACY_KEY_ID}
        # Appending needs the later migrations too (audit_chain_head, 0014).
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        with transaction.atomic():
            record_event(action="request.cancelled", actor_label="new")
        report = verify_chain()
        assert (report.ok, report.checked, report.last.key_id) == (True, 4, "test-1")
        with pytest.raises(Exception, match="append-only: TRUNCATE refused"), connection.cursor() as cursor:
            cursor.execute("TRUNCATE requests_app_auditevent")
    finally:
        # The later migrations back, for the tests after this one.
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
