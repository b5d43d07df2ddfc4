"""The naive Django baseline for ``bench/pipeline.py``: one Celery task per mail, which
sends it with Django's own mail API over a new SMTP connection each time (what most Django
projects do). The worker imports it with ``--include bench._naive_tasks``."""

from __future__ import annotations

import base64
import os

from celery import shared_task
from django.core.mail import EmailMessage, get_connection


@shared_task(ignore_result=True)
def naive_send(subject, body, from_email, to, attachment_b64, host, port, done_file) -> None:
    connection = get_connection(
        "django.core.mail.backends.smtp.EmailBackend", host=host, port=port, timeout=30
    )
    message = EmailMessage(subject, body, from_email, to, connection=connection)
    if attachment_b64:
        message.attach("data.bin", base64.b64decode(attachment_b64), "application/octet-stream")
    message.send()  # opens, sends, closes
    # Count it: one byte per mail, appended atomically (O_APPEND), read by the benchmark.
    fd = os.open(done_file, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
