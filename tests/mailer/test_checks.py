"""The production system check: warns about the development broker and database."""

from __future__ import annotations

import pytest
from django.core.checks.registry import registry
from django.test import override_settings

from mailer.checks import production_services

# The check only reads the engine name; no connection is made with these settings.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

SQLITE = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"}}
POSTGRES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "mailroom"}}


def _ids(found) -> set[str]:
    return {w.id for w in found}


def test_it_warns_in_production_about_the_filesystem_broker_and_sqlite():
    with override_settings(
        MAILROOM_ENV="production", CELERY_BROKER_URL="filesystem://", DATABASES=SQLITE
    ):
        found = production_services()
        assert _ids(found) == {"mailer.W001", "mailer.W002"}
        assert "redis://" in found[0].hint and "postgres://" in found[1].hint
    # Registered in MailerConfig.ready(): `manage.py check` and every start-up run it.
    assert production_services in registry.get_checks()


def test_it_is_quiet_in_production_on_redis_and_postgresql():
    with override_settings(
        MAILROOM_ENV="production", CELERY_BROKER_URL="redis://redis:6379/0", DATABASES=POSTGRES
    ):
        assert production_services() == []


def test_it_is_quiet_in_development():
    with override_settings(
        MAILROOM_ENV="development", CELERY_BROKER_URL="filesystem://", DATABASES=SQLITE
    ):
        assert production_services() == []
