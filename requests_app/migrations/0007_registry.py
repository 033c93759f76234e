"""External ids encrypted at rest; portal administration as a permission.

The plain ``external_id`` column is replaced by an encrypted one (the values
are encrypted with the first of FIELD_ENCRYPTION_KEYS on the way), and the
``administer_portal`` permission is created with a "Portal administrators"
group that holds it. Superusers hold every permission and keep working;
staff users who should administer the portal are added to the group.
"""
from django.db import migrations

import requests_app.encryption

PORTAL_ADMINISTRATORS = "Portal administrators"


def encrypt_external_ids(apps, schema_editor):
    AwsAccount = apps.get_model("requests_app", "AwsAccount")
    for account in AwsAccount.objects.exclude(external_id="").only("pk", "external_id"):
        account.external_id_encrypted = account.external_id
        account.save(update_fields=["external_id_encrypted"])


def decrypt_external_ids(apps, schema_editor):
    AwsAccount = apps.get_model("requests_app", "AwsAccount")
    for account in AwsAccount.objects.exclude(external_id_encrypted="").only("pk", "external_id_encrypted"):
        account.external_id = account.external_id_encrypted
        account.save(update_fields=["external_id"])


def create_administrators_group(apps, schema_editor):
    # Permissions are normally created after the migrations ran; the group
    # needs its permission now.
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="requests_app", model="awsaccount")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="administer_portal",
        defaults={
            "name": "Administer the portal: register accounts, set their approvers, requesters and rules, break glass"
        },
    )
    group, _ = Group.objects.get_or_create(name=PORTAL_ADMINISTRATORS)
    group.permissions.add(permission)


def remove_administrators_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=PORTAL_ADMINISTRATORS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("requests_app", "0006_repair"),
    ]

    operations = [
        migrations.AddField(
            model_name="awsaccount",
            name="external_id_encrypted",
            field=requests_app.encryption.EncryptedTextField(blank=True, default=""),
            preserve_default=False,
        ),
        migrations.RunPython(encrypt_external_ids, decrypt_external_ids),
        migrations.RemoveField(model_name="awsaccount", name="external_id"),
        migrations.RenameField(model_name="awsaccount", old_name="external_id_encrypted", new_name="external_id"),
        migrations.AlterModelOptions(
            name="awsaccount",
            options={
                "ordering": ["name"],
                "permissions": [
                    (
                        "administer_portal",
                        "Administer the portal: register accounts, set their approvers, requesters and rules, break glass",
                    )
                ],
            },
        ),
        migrations.RunPython(create_administrators_group, remove_administrators_group),
    ]
