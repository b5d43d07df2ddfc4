"""Recording: writing what an attempt learned, only if the message still carries our
attempt id (ARCHITECTURE invariant 3).

One path. ``policy.after_reply`` decides (what each recipient, the message, the attempt and
the account become); :func:`record` writes exactly that with ``rows.write``: the message row
conditional on our attempt id first, then the recipients that changed, the attempt's row and
the account's pause or throttle — in one statement on PostgreSQL, one transaction
elsewhere, and nothing at all if the message is no longer ours.

The recipients decided from are the rows read at the claim (``claiming.Claimed``): while a
message is ``sending`` only the holder of its attempt id changes them (every other writer is
conditional on another status).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from django.db import InterfaceError, OperationalError
from django.db import connection as db_connection
from django.utils import timezone

from mailer import policy
from mailer.delivery import rows
from mailer.delivery.attempt import Result
from mailer.models import DeliveryAttempt, OutboxMessage, Recipient, SmtpAccount

log = logging.getLogger("mailer.delivery")

Status = OutboxMessage.Status
Outcome = DeliveryAttempt.Outcome

T = TypeVar("T")

# Waits between tries to record a result when the database connection failed.
_RETRY_DELAYS = (0.2, 1.0, 3.0, 10.0)


class Recording:
    """An attempt's outcome as decided, and the write that records it, done once.

    A batch decides each message's outcome as soon as the server's reply is in (whether the
    rest of the batch goes on depends on it) and writes it with the next message's
    end-of-data mark, in one durable commit (:meth:`write_with`), or on its own before that
    mark (``worker.drain``, ``attempt.send``). :meth:`write` returns the outcome as recorded (which
    differs from :attr:`decided` only when the message was no longer ours)."""

    def __init__(self, message: OutboxMessage, account: SmtpAccount | None, decided: str,
                 write: Callable[[], str], started: float,
                 group: tuple[list[rows.Update], Callable[[bool], str]] | None = None) -> None:
        self.message, self.account, self.decided = message, account, decided
        self._write, self._started, self._group = write, started, group
        self.outcome: str | None = None

    def write(self) -> str:
        if self.outcome is None:
            self._written(self._write())
        assert self.outcome is not None
        return self.outcome

    def write_with(self, other: list[rows.Update]) -> bool | None:
        """Write this record and ``other`` (a conditional write: the next message's
        end-of-data mark) in one durable commit (``rows.write_groups``); return whether
        ``other`` matched. None, with nothing written, where this record is written already
        or is not a plain write (a quota wait, a lost lease). An error leaves nothing
        written: the statement is atomic."""
        if self.outcome is not None or self._group is None:
            return None
        updates, finish = self._group
        mine, theirs = rows.write_groups([updates, other], durable=True)
        self._written(finish(mine))
        return theirs

    def _written(self, outcome: str) -> None:
        self.outcome = outcome
        log.info("delivery entry=%s account=%s outcome=%s seconds=%.3f", self.message.pk,
                 self.account.pk if self.account else None, outcome,
                 time.monotonic() - self._started)


def record(message: OutboxMessage, attempt: DeliveryAttempt, account: SmtpAccount | None,
           result: Result, recipients: list[Recipient]) -> str:
    """Decide and write an attempt's result at once; return its outcome."""
    return decide(message, attempt, account, result, recipients).write()


def decide(message: OutboxMessage, attempt: DeliveryAttempt, account: SmtpAccount | None,
           result: Result, recipients: list[Recipient], *,
           started: float | None = None) -> Recording:
    """What the result means (``policy.after_reply``), and the write that records it.

    After the server's final reply the worker knows the outcome for certain; losing it
    with a dropped connection would leave the message to expire into ``unknown`` (and a
    user's "send again" would then duplicate it). We still hold the lease, so trying again
    on a fresh connection is safe: the write is all or nothing, conditional on our attempt
    id, and a try that committed before its connection died is found by :func:`_already`."""
    started = time.monotonic() if started is None else started
    if result.lease_lost:
        def dropped() -> str:
            log.warning("delivery entry=%s lost its lease before the end of data; not sent",
                        message.pk)
            return "lease_lost"
        return Recording(message, account, "lease_lost", dropped, started)
    now = timezone.now()
    recent = 0
    if account is not None and policy.throttled(result.decision, result.recipients):
        recent = _reconnecting(message, lambda: DeliveryAttempt.objects.filter(
            message__account=account, outcome=Outcome.THROTTLED,
            started_at__gte=now - policy.throttle_window(),
        ).count())
    after = policy.after_reply(
        decision=result.decision, replies=result.recipients,
        before={r.address: r.status for r in recipients},
        first_attempt_at=message.first_attempt_at or now, now=now, recent_throttles=recent,
    )
    updates = _updates(message, attempt, account, result, after, now,
                       {r.address: r.pk for r in recipients})

    def finish(matched: bool) -> str:
        """After the write: what it recorded."""
        if not matched:
            return _reconnecting(message, lambda: _already(message, attempt, result, now))
        if after.send_rest_now:
            from mailer import tasks

            tasks.wake(message.pk)
        return str(after.outcome)

    def write() -> str:
        return finish(_reconnecting(message, lambda: rows.write(*updates)))
    return Recording(message, account, str(after.outcome), write, started, (updates, finish))


def _reconnecting(message: OutboxMessage, query: Callable[[], T]) -> T:
    """Run ``query``, reconnecting to the database if the connection died meanwhile."""
    for delay in (*_RETRY_DELAYS, None):
        try:
            return query()
        except (OperationalError, InterfaceError) as exc:
            if delay is None:
                raise
            log.warning("delivery entry=%s could not record its result (%s); reconnecting",
                        message.pk, exc)
            db_connection.close()
            time.sleep(delay)
    raise AssertionError("unreachable")


def _updates(message, attempt, account, result: Result, after: policy.AfterReply,
             now: datetime, recipient_pks: dict[str, int]) -> list[rows.Update]:
    """The rows ``after`` changes: the message (conditional on our attempt id) first."""
    values = {"status": after.status, "attempt_id": None, "lease_until": None, "claimed_by": "",
              "last_error": after.last_error, "next_attempt_at": after.next_attempt_at,
              "wait_reason": after.wait_reason[:500]}
    if after.sent:
        values["sent_at"] = message.sent_at or now
    updates = [rows.Update(
        OutboxMessage, {"pk": message.pk, "attempt_id": attempt.attempt_id,
                        "status": Status.SENDING}, values,
    )]
    for address, r in after.recipients.items():
        updates.append(rows.Update(Recipient, {"pk": recipient_pks[address]}, {
            "status": r.status, "code": r.code, "enhanced": r.enhanced, "text": r.text[:5000],
            "reason": r.reason[:5000], "updated_at": now,
        }))
    updates.append(rows.Update(DeliveryAttempt, {"pk": attempt.pk},
                               _attempt_row(result, after.outcome, now)))
    if account is not None:
        updates += _account_updates(account, after, now)
    return updates


def _account_updates(account, after: policy.AfterReply, now: datetime) -> list[rows.Update]:
    if after.pause_account:
        return [rows.Update(SmtpAccount, {"pk": account.pk, "paused_at__isnull": True},
                            {"paused_at": now, "paused_reason": after.last_error})]
    if after.throttle_until is not None:
        return [rows.Update(SmtpAccount, {"pk": account.pk},
                            {"throttled_until": after.throttle_until})]
    if after.lift_throttle and account.throttled_until is not None:
        return [rows.Update(SmtpAccount, {"pk": account.pk, "throttled_until__lte": now},
                            {"throttled_until": None})]
    return []


def _attempt_row(result: Result, outcome: str, now: datetime) -> dict:
    """What an attempt's row says once it is over."""
    reply = result.reply
    return {
        "finished_at": now,
        "outcome": outcome,
        "reply_code": getattr(reply, "code", None),
        "reply_enhanced": getattr(reply, "enhanced", None) or "",
        "reply_text": getattr(reply, "text", None) or "",
        "error_class": type(result.error).__name__ if result.error is not None else "",
        "transcript": "\n".join(result.transcript),
        "connection_reused": result.reused,
        "recipients": [
            {"address": a, "status": r.status, "code": r.code, "enhanced": r.enhanced,
             "text": r.text, "reason": r.reason}
            for a, r in result.recipients.items()
        ],
    }


def _already(message, attempt, result: Result, now: datetime) -> str:
    """The message no longer carries our attempt id. Either our own earlier try committed
    but the connection died before it could say so (the result is already there), or the
    lease ran out and another worker took over: then the result is dropped."""
    recorded = DeliveryAttempt.objects.filter(pk=attempt.pk).values_list(
        "outcome", flat=True).first()
    if recorded not in (Outcome.IN_PROGRESS, Outcome.LEASE_EXPIRED, Outcome.UNKNOWN, None):
        return str(recorded)
    log.warning("delivery entry=%s attempt %s no longer holds the message; result dropped",
                message.pk, attempt.attempt_id)
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(
        finished_at=now, outcome=Outcome.LEASE_EXPIRED, transcript="\n".join(result.transcript)
    )
    return "lease_lost"


def release_for_quota(message: OutboxMessage, attempt: DeliveryAttempt,
                      not_before: datetime) -> None:
    """The quota says "not yet": give the message back, deferred to when it allows.
    Not counted as an attempt, and never a failure."""
    now = timezone.now()
    rows.write(
        rows.Update(OutboxMessage, {"pk": message.pk, "attempt_id": attempt.attempt_id,
                                    "status": Status.SENDING}, {
            "status": Status.DEFERRED, "next_attempt_at": not_before, "attempt_id": None,
            "lease_until": None, "claimed_by": "", "attempts": message.attempts - 1,
            "wait_reason": "Waiting for the account's sending quota "
                           f"(until {not_before:%H:%M:%S} UTC).",
        }),
        rows.Update(DeliveryAttempt, {"pk": attempt.pk}, {
            "finished_at": now, "outcome": Outcome.SKIPPED, "reply_text": "Sending quota reached.",
        }),
    )
