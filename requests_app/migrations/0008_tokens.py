"""API tokens move from DRF's authtoken (keys in clear, never expiring) to
requests_app.ApiToken (knox: hashed, named, expiring).

Existing authtoken tokens are dropped, not converted: they never expired and
nobody could say who had seen them. Their owners make new ones (the API tokens
page), and automation gets new ones from ``manage.py create_api_token``.
The authtoken content types and permissions that remain are removed by
``manage.py remove_stale_contenttypes``.
"""
import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.migrations.recorder import MigrationRecorder


def drop_authtoken_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" in connection.introspection.table_names():
        schema_editor.execute("DROP TABLE %s" % schema_editor.quote_name("authtoken_token"))
    # Forget authtoken's migrations too, so that installing it again would start clean.
    recorder = MigrationRecorder(connection)
    if recorder.has_table():
        recorder.migration_qs.filter(app="authtoken").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0007_registry'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('token_key', models.CharField(db_index=True, max_length=25)),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('digest', models.CharField(max_length=128, unique=True)),
                ('name', models.CharField(max_length=64, validators=[django.core.validators.RegexValidator('\\A[^\\x00-\\x20\\x7f][^\\x00-\\x1f\\x7f]*\\Z', 'A name is printable text that does not start with a space.')])),
                ('expiry', models.DateTimeField()),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='auth_token_set', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created', '-id'],
                'constraints': [models.UniqueConstraint(fields=('user', 'name'), name='api_token_name_unique_per_user')],
            },
        ),
        migrations.RunPython(drop_authtoken_tokens, migrations.RunPython.noop, elidable=True),
    ]
