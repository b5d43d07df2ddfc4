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


@app.on_after_configure.connect
def _schedule_sweep(sender, **kwargs) -> None:
    # The sweeper finds every due message again: retries, released holds, lost wake-ups,
    # expired leases (ARCHITECTURE invariant 1). Beat runs it; retry times stay in the DB.
    from django.conf import settings

    # ``expires``: while no worker runs, beat keeps ticking; without it the stale sweeps
    # pile up in the broker and all run at once (each enqueuing every due message) when a
    # worker comes back. One sweep missed is harmless: the next one finds the same rows.
    sender.add_periodic_task(
        settings.MAILROOM_SWEEP_SECONDS, sender.signature("mailer.tasks.sweep"),
        name="mailroom-sweep", expires=settings.MAILROOM_SWEEP_SECONDS,
    )
    # The IMAP passes (Sent copies, delivery reports) are started by the sweep when they
    # have work (mailer.tasks.sweep), not ticked here.
    # The history's tab counters gain rows with every status change (mailer.counts):
    # folding them keeps each read to a few rows. A missed run only leaves more to sum.
    sender.add_periodic_task(
        settings.MAILROOM_COUNTS_COMPACT_SECONDS, sender.signature("mailer.tasks.compact_counts"),
        name="mailroom-compact-counts", expires=settings.MAILROOM_COUNTS_COMPACT_SECONDS,
    )
    # Held mail (undo window, send later) is released within a couple of seconds of its
    # time by a cheaper, more frequent look at the scheduled rows only (pointless when the
    # sweep itself runs that often).
    if settings.MAILROOM_RELEASE_SECONDS < settings.MAILROOM_SWEEP_SECONDS:
        sender.add_periodic_task(
            settings.MAILROOM_RELEASE_SECONDS, sender.signature("mailer.tasks.release_holds"),
            name="mailroom-release-holds", expires=settings.MAILROOM_RELEASE_SECONDS,
        )
