from django.apps import AppConfig


class MailerConfig(AppConfig):
    name = "mailer"
    verbose_name = "Mailer"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from . import checks as mailer_checks

        checks.register(mailer_checks.production_services)

        from django.db.models.signals import post_migrate

        post_migrate.connect(_repair_triggers, sender=self)


def _repair_triggers(sender, using, **kwargs) -> None:
    """A later migration that copies a table on SQLite drops its triggers with it: the
    search index's and the tab counters'."""
    from django.db import connections

    from . import counts, search

    search.repair(connections[using])
    counts.repair(connections[using])
