"""Claiming: taking due messages for delivery, one worker only (ARCHITECTURE invariant 3).

One path: :func:`claim_batch` claims up to ``limit`` due messages of one account in one
statement (``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`` on
PostgreSQL; SQLite serialises writers, so the same statement without the lock clause is just
as safe), each with its own attempt id, lease and ``DeliveryAttempt`` row written in the same
transaction, before any network traffic. :func:`claim` is a batch of one, by id (the
deleted-account case, where there is no account to drain). Rows another worker holds are
skipped, never waited for; a row is claimed by one worker only (the UPDATE is conditional
on the row being due, and PostgreSQL re-checks that under the row lock).

After a throttle, one message of the account goes first as a probe and the others wait for
its answer: the claim takes the throttled account's row lock first, so that the "no message
of the account in ``sending``" check sees the other claims' commits.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import NamedTuple, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from mailer.models import DeliveryAttempt, OutboxMessage, Recipient, SmtpAccount

Status = OutboxMessage.Status
Outcome = DeliveryAttempt.Outcome

class Claimed(NamedTuple):
    """What a claim hands over: the message, its attempt, and every one of its recipients
    (the record decides from all of them; while the message is ``sending`` only the holder
    of its attempt id changes them)."""

    message: OutboxMessage
    attempt: DeliveryAttempt
    recipients: list[Recipient]

_DUE_STATUSES = [Status.QUEUED, Status.SCHEDULED, Status.DEFERRED]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claimable_accounts(now: datetime) -> Q:
    """Mail of a paused or throttled account waits; a message whose account was deleted is
    claimed so that it can be failed with a clear reason. When a throttle has just run out,
    one message goes first as a probe."""
    sending_on_account = OutboxMessage.objects.filter(
        account=OuterRef("account"), status=Status.SENDING
    )
    return cast(Q, Q(account__isnull=True) | (
        Q(account__paused_at__isnull=True)
        & (
            Q(account__throttled_until__isnull=True)
            | (Q(account__throttled_until__lte=now) & ~Exists(sending_on_account))
        )
    ))


def due(now: datetime) -> Q:
    return Q(status=Status.QUEUED) | Q(
        status__in=[Status.SCHEDULED, Status.DEFERRED], next_attempt_at__lte=now
    )


def claim_batch(account_id: int, *, limit: int, worker: str | None = None) -> list[Claimed]:
    """Claim up to ``limit`` due messages of one account, in due order."""
    return _claim(OutboxMessage.objects.filter(account_id=account_id), Q(pk=account_id), limit,
                  worker)


def claim(message_id: int, *, worker: str | None = None) -> Claimed | None:
    """Claim one message by id, or return None if it is not due, taken, or finished."""
    scope = OutboxMessage.objects.filter(pk=message_id)
    batch = _claim(scope, Q(pk__in=scope.values("account_id")), 1, worker)
    return batch[0] if batch else None


def _claim(scope: QuerySet, account: Q, limit: int, worker: str | None) -> list[Claimed]:
    """Claim from ``scope``, the messages of the account(s) ``account`` selects."""
    now = timezone.now()
    worker = (worker or worker_name())[:200]
    with transaction.atomic():
        throttled = SmtpAccount.objects.filter(account, throttled_until__isnull=False)
        probe_only = bool(list(throttled.select_for_update().values_list("pk", flat=True)))
        inner = (
            scope.filter(claimable_accounts(now)).filter(due(now))
            .order_by("next_attempt_at", "pk").values("pk")[: 1 if probe_only else limit]
        )
        taken = _take(inner, now, worker)
        if not taken:
            return []
        attempts = DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(message_id=pk, attempt_id=aid, worker=worker, started_at=now)
            for pk, aid in taken.items()
        )
    return _with_recipients(attempts, now)


def _take(inner: QuerySet, now: datetime, worker: str) -> dict[int, uuid.UUID]:
    """The claim itself: one UPDATE of the due rows in ``inner``; their new attempt ids."""
    if connection.vendor == "postgresql":
        inner = inner.select_for_update(skip_locked=True, of=("self",))
        new_id = "gen_random_uuid()"
    else:
        new_id = "lower(hex(randomblob(16)))"  # Django's UUIDField on SQLite: 32 hex digits
    inner_sql, inner_params = inner.query.sql_with_params()
    ops = connection.ops
    stamp = ops.adapt_datetimefield_value(now)
    lease = ops.adapt_datetimefield_value(now + timedelta(seconds=settings.MAILROOM_LEASE_SECONDS))
    sql = (
        f"UPDATE {OutboxMessage._meta.db_table} SET status = %s, attempt_id = {new_id}, "
        "lease_until = %s, claimed_by = %s, attempts = attempts + 1, last_attempt_at = %s, "
        "first_attempt_at = COALESCE(first_attempt_at, %s), wait_reason = '' "
        f"WHERE id IN ({inner_sql}) AND status IN (%s, %s, %s) RETURNING id, attempt_id"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [Status.SENDING, lease, worker, stamp, stamp, *inner_params,
                          *_DUE_STATUSES])
        return {pk: uuid.UUID(str(aid)) for pk, aid in cur.fetchall()}


def _with_recipients(attempts: list[DeliveryAttempt], now: datetime) -> list[Claimed]:
    ids = [a.message_id for a in attempts]
    messages = OutboxMessage.objects.select_related("account").in_bulk(ids)
    recipients: dict[int, list[Recipient]] = {pk: [] for pk in ids}
    for r in Recipient.objects.filter(message_id__in=ids):
        recipients[r.message_id].append(r)
    batch = [Claimed(messages[a.message_id], a, recipients[a.message_id]) for a in attempts]
    batch.sort(key=lambda c: (c.message.next_attempt_at or now, c.message.pk))
    return batch


def give_back(attempts: list[DeliveryAttempt]) -> None:
    """Claimed but not started (the account must wait): back to the queue, not counted as
    an attempt. Conditional on our attempt ids, like every write of a claim."""
    if not attempts:
        return
    now = timezone.now()
    ids = [a.attempt_id for a in attempts]
    with transaction.atomic():
        OutboxMessage.objects.filter(attempt_id__in=ids, status=Status.SENDING).update(
            status=Status.QUEUED, next_attempt_at=now, attempt_id=None, lease_until=None,
            claimed_by="", attempts=F("attempts") - 1,
        )
        DeliveryAttempt.objects.filter(attempt_id__in=ids).update(
            finished_at=now, outcome=Outcome.SKIPPED,
            reply_text="Not attempted: the account has to wait.",
        )
