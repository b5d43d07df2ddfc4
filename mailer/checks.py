"""System checks for the deployment shape (``manage.py check``; also run at start-up).

The embedded default (SQLite, the ``filesystem://`` broker) is for one machine and a few
users; in production it works, but it is not what Mailroom is built to run on there."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning


def production_services(app_configs=None, **kwargs) -> list[Warning]:
    if settings.MAILROOM_ENV != "production":
        return []
    found = []
    if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        found.append(
            Warning(
                "The Celery broker is the filesystem:// transport, made for development on "
                "one machine.",
                hint="Set CELERY_BROKER_URL (or REDIS_URL) to a Redis URL, e.g. "
                "redis://redis:6379/0, as docker-compose.yml does.",
                id="mailer.W001",
            )
        )
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        found.append(
            Warning(
                "The database is SQLite, made for development: several web and worker "
                "processes contend for its single write lock.",
                hint="Set DATABASE_URL to a PostgreSQL URL, e.g. "
                "postgres://mailroom:PASSWORD@db:5432/mailroom, as docker-compose.yml does.",
                id="mailer.W002",
            )
        )
    return found
