"""Re-encrypt every encrypted value with the first of FIELD_ENCRYPTION_KEYS.

Key rotation: put the new key first in FIELD_ENCRYPTION_KEYS (keep the old
ones after it), restart the portal, run this command, then drop the old keys.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from requests_app.encryption import EncryptedTextField, rotate
from requests_app.models import AwsAccount

# Every (model, field) stored with EncryptedTextField.
ENCRYPTED_FIELDS = [(AwsAccount, "external_id")]


class Command(BaseCommand):
    help = "Re-encrypt every encrypted column with the first of FIELD_ENCRYPTION_KEYS (after adding a new key)."

    def handle(self, *args, **options):
        total = 0
        for model, name in ENCRYPTED_FIELDS:
            field = model._meta.get_field(name)
            if not isinstance(field, EncryptedTextField):
                raise TypeError(f"{model._meta.label}.{name} is not an encrypted field")
            table, column = connection.ops.quote_name(model._meta.db_table), connection.ops.quote_name(field.column)
            pk = connection.ops.quote_name(model._meta.pk.column)
            with transaction.atomic():
                # The stored tokens themselves, read and written as text: the
                # plain values never pass through this process's models.
                with connection.cursor() as cursor:
                    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
                    cursor.execute(f"SELECT {pk}, {column} FROM {table} WHERE {column} <> ''{lock}")
                    rows = cursor.fetchall()
                    for row_pk, token in rows:
                        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", [rotate(token), row_pk])
            total += len(rows)
            self.stdout.write(f"{model._meta.label}.{name}: {len(rows)} value(s) re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {total} value(s) with the first key."))
