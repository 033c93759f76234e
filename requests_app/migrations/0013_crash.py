from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("requests_app", "0012_groups")]

    operations = [
        migrations.AddField(
            model_name="accessrequest",
            name="lost_work_sent_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="provisioningstep",
            name="lease_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
