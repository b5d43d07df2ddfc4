"""Tab counts without counting: ``StatusCount`` rows kept by triggers on the outbox
(``mailer/counts.py`` holds the SQL), filled from the messages that exist; and the
owner's date index gains the status, so a date-filtered count reads only the index."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from mailer import counts


def _install(apps, schema_editor):
    counts.install(schema_editor.connection)


def _uninstall(apps, schema_editor):
    counts.uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ('mailer', '0005_history_search_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='StatusCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('owner', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('account', models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='mailer.smtpaccount')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('scheduled', 'Scheduled'), ('sending', 'Sending'), ('sent', 'Sent'), ('deferred', 'Deferred'), ('unknown', 'Outcome unknown'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], max_length=10)),
                ('n', models.IntegerField()),
            ],
            options={
                'indexes': [models.Index(fields=['owner', 'status', 'account', 'n'], name='statuscount_key')],
            },
        ),
        migrations.RemoveIndex(
            model_name='outboxmessage',
            name='outbox_owner_created',
        ),
        migrations.AddIndex(
            model_name='outboxmessage',
            index=models.Index(fields=['owner', '-created_at', 'status'], name='outbox_owner_created'),
        ),
        migrations.RunPython(_install, _uninstall),
    ]
