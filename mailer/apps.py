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

        post_migrate.connect(_repair_search, sender=self)


def _repair_search(sender, using, **kwargs) -> None:
    """A later migration that copies a table on SQLite drops the search triggers with it."""
    from django.db import connections

    from . import search

    search.repair(connections[using])
