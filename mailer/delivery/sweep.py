"""The sweep (Celery beat): find every due message again and every expired lease.

Retry times live in ``next_attempt_at``; the broker only carries wake-ups with ids, so a
lost wake-up costs at most one sweep interval. A lease that expired after its attempt's
``end_of_data_at`` becomes ``unknown`` (the server may have the message); one that expired
before it is retried safely.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mailer.delivery.claiming import claimable_accounts
from mailer.models import DeliveryAttempt, OutboxMessage

log = logging.getLogger("mailer.delivery")

Status = OutboxMessage.Status
Outcome = DeliveryAttempt.Outcome

_UNKNOWN_WORDS = (
    "The worker delivering this message stopped after the message data was sent, before the "
    "server's reply was recorded. The server may have it: check before resending."
)


@dataclass
class SweepReport:
    enqueued: list[int] = field(default_factory=list)
    reclaimed: int = 0
    unknown: int = 0
    released: int = 0


def _publisher(enqueue):
    if enqueue is not None:
        return enqueue
    from mailer import tasks

    return tasks.publish


def sweep(*, enqueue=None) -> SweepReport:
    """Find every due message again (lost wake-ups, scheduled and deferred mail, released
    holds) and every expired lease. ``enqueue(id)`` defaults to the Celery task."""
    enqueue = _publisher(enqueue)
    report = SweepReport()
    now = timezone.now()
    batch = settings.MAILROOM_SWEEP_BATCH
    requeued = _reclaim_expired(now, report)
    # Scheduled (hold over, time come) and deferred (retry due) mail becomes queued now.
    due, report.released = _release_due(now, [Status.SCHEDULED, Status.DEFERRED], batch)
    lost = _lost_wake_ups(now, batch)
    for pk in [*requeued, *due, *lost]:
        enqueue(pk)
        report.enqueued.append(pk)
    if report.enqueued or report.reclaimed:
        log.info("sweep enqueued=%d reclaimed=%d unknown=%d", len(report.enqueued),
                 report.reclaimed, report.unknown)
    return report


def release_holds(*, enqueue=None) -> list[int]:
    """The short wake-up for held mail (undo window, send later): scheduled messages whose
    time has come become queued and a worker is woken for each. Beat runs it every
    ``MAILROOM_RELEASE_SECONDS`` so that a 10 s undo window sends about 10 s after the
    click rather than at the next full sweep. No Celery ETA: the time is in the database."""
    enqueue = _publisher(enqueue)
    due, _ = _release_due(timezone.now(), [Status.SCHEDULED], settings.MAILROOM_SWEEP_BATCH)
    for pk in due:
        enqueue(pk)
    return due


def _lost_wake_ups(now: datetime, batch: int) -> list[int]:
    """Queued mail nobody picked up for a while: its wake-up was lost (broker down, purged
    queue, worker gone). Stamping ``next_attempt_at`` keeps it from being re-sent to the
    broker at every sweep while it waits behind a backlog."""
    grace = timedelta(seconds=2 * settings.MAILROOM_SWEEP_SECONDS)
    lost = list(
        OutboxMessage.objects.filter(
            claimable_accounts(now), status=Status.QUEUED, next_attempt_at__lte=now - grace
        ).order_by("next_attempt_at").values_list("pk", flat=True)[:batch]
    )
    if lost:
        OutboxMessage.objects.filter(pk__in=lost, status=Status.QUEUED).update(next_attempt_at=now)
    return lost


def _release_due(now: datetime, statuses: list[str], batch: int) -> tuple[list[int], int]:
    """Make due mail in ``statuses`` queued; return its ids and how many rows changed."""
    due = list(
        OutboxMessage.objects.filter(
            claimable_accounts(now), status__in=statuses, next_attempt_at__lte=now,
        ).order_by("next_attempt_at").values_list("pk", flat=True)[:batch]
    )
    if not due:
        return [], 0
    released = OutboxMessage.objects.filter(pk__in=due, status__in=statuses).update(
        status=Status.QUEUED, next_attempt_at=now
    )
    return due, released


def _reclaim_expired(now: datetime, report: SweepReport) -> list[int]:
    """Give up the claims of workers that vanished; return the ids to send again."""
    requeued = []
    expired = OutboxMessage.objects.filter(status=Status.SENDING, lease_until__lt=now)
    for pk, attempt_id in expired.values_list("pk", "attempt_id"):
        attempt = None
        if attempt_id is not None:
            attempt = DeliveryAttempt.objects.filter(attempt_id=attempt_id).first()
        unknown = (attempt is not None and attempt.end_of_data_at is not None
                   and not settings.MAILROOM_RETRY_UNKNOWN)
        changes: dict[str, Any]
        if unknown:
            changes = {"status": Status.UNKNOWN, "next_attempt_at": None,
                       "last_error": _UNKNOWN_WORDS}
        else:
            changes = {"status": Status.QUEUED, "next_attempt_at": now}
        with transaction.atomic():
            done = OutboxMessage.objects.filter(
                pk=pk, attempt_id=attempt_id, status=Status.SENDING, lease_until__lt=now
            ).update(attempt_id=None, lease_until=None, claimed_by="", **changes)
            if not done:
                continue
            if attempt is not None:
                DeliveryAttempt.objects.filter(pk=attempt.pk).update(
                    finished_at=now, outcome=Outcome.UNKNOWN if unknown else Outcome.LEASE_EXPIRED,
                )
        if unknown:
            report.unknown += 1
        else:
            report.reclaimed += 1
            requeued.append(pk)
    return requeued
