"""The Celery app (``celery -A config worker`` / ``celery -A config beat``).

Tasks are thin wrappers in ``mailer.tasks``; the database is the queue and the broker only
carries wake-ups (ARCHITECTURE.md, invariant 1).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
