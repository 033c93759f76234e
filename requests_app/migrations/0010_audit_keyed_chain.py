"""The keyed audit chain: a key id on every event, TRUNCATE refused, and the
verification progress.

Events written before this migration keep their plain SHA-256 hashes and get
the key id "sha256-legacy"; the verifier accepts them only as the chain's
prefix (requests_app/audit.py).
"""
from django.db import migrations, models

POSTGRES_UP = """
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON requests_app_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
"""
POSTGRES_DOWN = "DROP TRIGGER IF EXISTS audit_event_no_truncate ON requests_app_auditevent;"
# SQLite has no TRUNCATE; adding the column rebuilt the table without its
# triggers, so they are created again.
SQLITE_UP = [
    "DROP TRIGGER IF EXISTS audit_event_no_update;",
    "DROP TRIGGER IF EXISTS audit_event_no_delete;",
    """CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON requests_app_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON requests_app_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;""",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"no append-only trigger for database {schema_editor.connection.vendor}")
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("requests_app", "0009_applyplan")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(default="sha256-legacy", max_length=32),
            preserve_default=False,
        ),
        migrations.RunPython(
            _run({"postgresql": [POSTGRES_UP], "sqlite": SQLITE_UP}),
            _run({"postgresql": [POSTGRES_DOWN], "sqlite": SQLITE_UP}),
        ),
        migrations.CreateModel(
            name="AuditChainState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("verified_through_id", models.BigIntegerField(default=0)),
                ("verified_through_hash", models.CharField(blank=True, max_length=64)),
                ("verified_through_key_id", models.CharField(blank=True, max_length=32)),
                ("verified_count", models.BigIntegerField(default=0)),
                ("checked_at", models.DateTimeField(blank=True, null=True)),
                ("ok", models.BooleanField(null=True)),
                ("reason", models.TextField(blank=True)),
                ("first_broken_id", models.BigIntegerField(blank=True, null=True)),
                ("last_checkpoint", models.JSONField(blank=True, default=dict)),
            ],
        ),
    ]
