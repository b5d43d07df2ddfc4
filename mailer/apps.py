from django.apps import AppConfig


class MailerConfig(AppConfig):
    name = "mailer"
    verbose_name = "Mailer"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from . import checks as mailer_checks

        checks.register(mailer_checks.production_services)
