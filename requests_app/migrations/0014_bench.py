"""The audit chain's head, read under the append lock in one round trip.

``audit_chain_head(lock_key)`` takes the transaction-level advisory lock that
serialises appends, then reads the last event's hash. The function is
VOLATILE, so its SELECT takes a snapshot of its own after the lock is held and
sees the event the previous holder committed; a single statement doing both
would read with a snapshot taken before it waited. SECURITY INVOKER (the
default): it reads the audit table with the caller's own SELECT privilege.
"""
from django.db import migrations

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION audit_chain_head(lock_key bigint) RETURNS varchar AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN (SELECT hash FROM requests_app_auditevent ORDER BY id DESC LIMIT 1);
END;
$$ LANGUAGE plpgsql VOLATILE;
"""
POSTGRES_DOWN = "DROP FUNCTION IF EXISTS audit_chain_head(bigint);"


def _run(statement):
    def run(apps, schema_editor):
        # SQLite serialises appends with an immediate transaction: nothing to create.
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("requests_app", "0013_crash")]

    operations = [migrations.RunPython(_run(POSTGRES_UP), _run(POSTGRES_DOWN))]
