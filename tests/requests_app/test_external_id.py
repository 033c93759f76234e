"""The external id: encrypted at rest with rotatable keys, replaceable in the
admin but never shown there, and changed with an event that says only that
it changed."""
from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from requests_app.encryption import FieldDecryptionError
from requests_app.grants import account_access
from requests_app.models import AuditEvent, AwsAccount
from requests_app.services import account_external_id_set
from tests.requests_app.test_account_members import admin_form

SECRET = "Ext-1d-That-N0body-Reads"


def stored(account: AwsAccount) -> str:
    """What the database itself holds in the column."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT external_id FROM requests_app_awsaccount WHERE id = %s", [account.pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_the_column_holds_a_token_that_only_the_keys_open(cast):
    account_external_id_set(actor=cast.staff, account_id="222222222222", external_id=SECRET)

    raw = stored(cast.remote)
    assert SECRET not in raw and raw.startswith("gAAAA")  # a Fernet token
    assert AwsAccount.objects.get(pk=cast.remote.pk).external_id == SECRET
    # The workers get it when they build the account's access, and nothing prints it.
    access = account_access(AwsAccount.objects.get(pk=cast.remote.pk))
    assert access.external_id == SECRET and SECRET not in repr(access)


@pytest.mark.django_db
def test_keys_rotate_new_first_then_the_old_one_goes(cast, settings, capsys):
    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    account_external_id_set(actor=cast.staff, account_id="222222222222", external_id=SECRET)
    before = stored(cast.remote)

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_field_encryption")
    assert "re-encrypted" in capsys.readouterr().out
    after = stored(cast.remote)
    assert after != before and SECRET not in after

    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert AwsAccount.objects.get(pk=cast.remote.pk).external_id == SECRET
    settings.FIELD_ENCRYPTION_KEYS = [old]
    with pytest.raises(FieldDecryptionError) as refused:
        AwsAccount.objects.get(pk=cast.remote.pk)
    assert after not in str(refused.value)


@pytest.mark.django_db
def test_a_change_is_audited_without_the_value(cast):
    account_external_id_set(actor=cast.staff, account_id="222222222222", external_id=SECRET, source_ip="10.3.3.3")

    event = AuditEvent.objects.get(action="account.external_id_changed")
    assert event.details == {"external_id_set_before": True, "external_id_set": True}
    assert (event.actor_label, event.source_ip, event.account) == ("sam", "10.3.3.3", cast.remote)
    assert SECRET not in json.dumps(list(AuditEvent.objects.values()), default=str)


@pytest.mark.django_db
def test_the_admin_says_whether_it_is_set_and_replaces_it_without_ever_showing_it(cast, client):
    account_external_id_set(actor=cast.staff, account_id="222222222222", external_id=SECRET)
    client.force_login(cast.staff)
    url = reverse("admin:requests_app_awsaccount_change", args=[cast.remote.pk])

    page = client.get(url).content.decode()
    assert SECRET not in page
    assert "External id set" in page and 'name="new_external_id"' in page
    listing = client.get(reverse("admin:requests_app_awsaccount_changelist")).content.decode()
    assert SECRET not in listing

    replacement = "Repl4ced-External-Id"
    response = client.post(url, admin_form(cast.remote, new_external_id=replacement))
    assert response.status_code == 302
    assert AwsAccount.objects.get(pk=cast.remote.pk).external_id == replacement
    assert AuditEvent.objects.filter(action="account.external_id_changed").count() == 2
    for text in (client.get(url).content.decode(), json.dumps(list(LogEntry.objects.values()), default=str)):
        assert replacement not in text and SECRET not in text

    # A failed save does not send the typed value back either.
    refused = client.post(url, admin_form(cast.remote, new_external_id="Typed-But-Refused", required_approvals="9"))
    assert refused.status_code == 200 and "Typed-But-Refused" not in refused.content.decode()


@pytest.mark.django_db
def test_the_admin_removes_a_remote_accounts_external_id_only_when_told_to(cast, client):
    client.force_login(cast.staff)
    url = reverse("admin:requests_app_awsaccount_change", args=[cast.remote.pk])

    refused = client.post(url, admin_form(cast.remote, remove_external_id="on"))
    assert refused.status_code == 200 and b"needs the external id" in refused.content
    assert AwsAccount.objects.get(pk=cast.remote.pk).external_id

    done = client.post(url, admin_form(cast.remote, remove_external_id="on", no_external_id="on"))
    assert done.status_code == 302
    assert AwsAccount.objects.get(pk=cast.remote.pk).external_id == ""
    event = AuditEvent.objects.get(action="account.external_id_changed")
    assert event.details == {"external_id_set_before": True, "external_id_set": False}


@pytest.mark.django_db
def test_the_command_refuses_a_remote_account_without_an_external_id_unless_told(db):
    arguments = [
        "register_account", "--account-id=222222222222", "--name=Remote", "--remote",
        "--provisioner-role-arn=arn:aws:iam::222222222222:role/portal",
    ]
    with pytest.raises(CommandError) as refused:
        call_command(*arguments)
    assert "--no-external-id" in str(refused.value)
    assert not AwsAccount.objects.exists()

    call_command(*arguments, "--no-external-id")
    assert AwsAccount.objects.get().external_id == ""


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_the_external_ids_already_stored():
    executor = MigrationExecutor(connection)
    # Found by name, whatever number it has once the migrations are chained.
    (name,) = [key[1] for key in executor.loader.disk_migrations if key[0] == "requests_app" and key[1].endswith("_registry")]
    after = [("requests_app", name)]
    before = [parent for parent in executor.loader.graph.node_map[after[0]].parents if parent.key[0] == "requests_app"]
    before = [parent.key for parent in before]
    executor.migrate(before)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO requests_app_awsaccount (account_id, name, is_datalake, is_remote, provisioner_role_arn,"
            " external_id, default_region, required_approvals, allow_secret_shape_check, created_at, updated_at)"
            " VALUES ('222222222222', 'Remote', false, true, 'arn:aws:iam::222222222222:role/p', %s,"
            " 'eu-west-1', 1, false, now(), now())",
            [SECRET],
        )
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        with connection.cursor() as cursor:
            cursor.execute("SELECT external_id FROM requests_app_awsaccount")
            (raw,) = cursor.fetchone()
        assert SECRET not in raw
        apps = executor.loader.project_state(after).apps
        assert apps.get_model("requests_app", "AwsAccount").objects.get().external_id == SECRET
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
