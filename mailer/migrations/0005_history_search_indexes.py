"""Substring indexes for the history search (``mailer/search.py`` holds the SQL):
``pg_trgm`` GIN indexes on PostgreSQL, FTS5 trigram tables kept in sync by triggers on SQLite.

Creating the ``pg_trgm`` extension needs a role allowed to (a superuser, or the database
owner on PostgreSQL 13+ where pg_trgm is a trusted extension)."""

from django.db import migrations

from mailer import search


def _install(apps, schema_editor):
    search.install(schema_editor.connection)


def _uninstall(apps, schema_editor):
    search.uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("mailer", "0004_recipient_reason"),
    ]

    operations = [
        migrations.RunPython(_install, _uninstall),
    ]
