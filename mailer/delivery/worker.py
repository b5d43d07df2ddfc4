"""What a worker does with a wake-up: claim, attempt, record — for one message or for the
due mail of its account (``drain``, the Celery task's body)."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from mailer import quotas, wakeups
from mailer.delivery import attempt as attempts
from mailer.delivery.cache import connections
from mailer.delivery.claiming import Claimed, claim, claim_batch, give_back
from mailer.delivery.recording import Recording, decide, release_for_quota
from mailer.models import DeliveryAttempt, OutboxMessage, Recipient

log = logging.getLogger("mailer.delivery")

Outcome = DeliveryAttempt.Outcome

# Outcomes after which the rest of a batch is not sent now: the account is paused,
# throttled or out of quota, and its other mail must wait as well.
_STOP_BATCH = {"quota", Outcome.PAUSED.value, Outcome.THROTTLED.value}


def deliver(message_id: int) -> str | None:
    """One delivery attempt for one message. Returns the attempt's outcome, or None if the
    message was not claimable (not due, taken by another worker, finished)."""
    claimed = claim(message_id)
    if claimed is None:
        log.debug("delivery entry=%s not claimable", message_id)
        return None
    return deliver_claimed(*claimed)


def deliver_claimed(message: OutboxMessage, attempt: DeliveryAttempt,
                    recipients: list[Recipient]) -> str:
    """Attempt a claimed message and record what happened; return the outcome."""
    return _attempt(message, attempt, recipients).write()


def _attempt(message: OutboxMessage, attempt: DeliveryAttempt, recipients: list[Recipient],
             previous: Recording | None = None,
             then: attempts.Upcoming | None = None) -> Recording:
    """Attempt a claimed message; return its outcome decided, not yet written. The attempt
    goes to the recipients still waiting (never those that accepted or failed).

    ``previous`` (the batch's message before this one) is written during this attempt: with
    its end-of-data mark, in one commit (``attempts.send``; a durable commit costs a flush of
    the WAL, and shared with the mark it costs no time of its own), before the exchange for a
    large message, or, when this one never reaches its end of data, before its outcome is
    decided. ``then``, the batch's next message, has its envelope sent right behind this one's
    data (``attempts.send``)."""
    started = time.monotonic()
    account = message.account
    pending = _waiting(recipients)
    try:
        if account is None:
            result = attempts.deleted_account(pending)
        elif not pending:
            result = attempts.Result()
        else:
            # The account's sending quota, across all workers: None is "send now".
            not_before = quotas.reserve(account)
            if not_before is not None and not_before > timezone.now():
                def give_back_for_quota() -> str:
                    release_for_quota(message, attempt, not_before)
                    return "quota"
                return Recording(message, account, "quota", give_back_for_quota, started)
            result = attempts.send(message, attempt, account, pending, previous=previous,
                                   then=then)
    finally:
        if previous is not None:
            previous.write()  # written once: a second call returns what the first wrote
    return decide(message, attempt, account, result, recipients, started=started)


def _waiting(recipients: list[Recipient]) -> list[Recipient]:
    """The recipients an attempt goes to: those still waiting."""
    return [r for r in recipients if r.status in Recipient.RETRY_STATUSES]


def _upcoming(batch: list[Claimed], n: int) -> attempts.Upcoming | None:
    """The batch's message after the ``n``-th, for its envelope to go out ahead."""
    if n + 1 >= len(batch):
        return None
    message, _, recipients = batch[n + 1]
    return attempts.Upcoming(message, _waiting(recipients))


def drain(message_id: int, *, worker: str | None = None) -> list[str]:
    """The Celery task's body: deliver ``message_id`` and the rest of its account's due mail,
    claimed in batches (``claim_batch``), until none is due or ``MAILROOM_DRAIN_SECONDS``
    have passed (the sweeper and the other wake-ups carry on from there). Returns the
    outcomes, in order."""
    account_id = OutboxMessage.objects.filter(pk=message_id).values_list(
        "account_id", flat=True).first()
    if account_id is None:
        # Not there any more, or its account was deleted: claimed by id, failed with a
        # clear reason.
        outcome = deliver(message_id)
        return [] if outcome is None else [outcome]
    _gather(account_id)
    stop_at = time.monotonic() + float(settings.MAILROOM_DRAIN_SECONDS)
    outcomes: list[str] = []
    while True:
        if time.monotonic() >= stop_at:
            # Time is up with mail perhaps left: its sends may have rung for this drain
            # only (their wake-ups coalesced), so ring once more for the rest.
            from mailer import tasks

            tasks.publish(message_id, account_id=account_id)
            return outcomes
        batch = claim_batch(account_id, limit=settings.MAILROOM_CLAIM_BATCH, worker=worker)
        if not batch:
            return outcomes
        outcomes += _send_batch(account_id, batch)
        if outcomes[-1] in _STOP_BATCH:
            return outcomes


def _send_batch(account_id: int, batch: list[Claimed]) -> list[str]:
    """Send a claimed batch of the account's mail one message after another, each message's
    record written with the next one's end-of-data mark; stop at an outcome that holds the
    account's other mail (the rest is given back). Returns the outcomes, all written."""
    done: list[Recording] = []
    try:
        for n, claimed in enumerate(batch):
            done.append(_attempt(*claimed, previous=done[-1] if done else None,
                                 then=_upcoming(batch, n)))
            if done[-1].decided in _STOP_BATCH:
                done[-1].write()
                give_back([c.attempt for c in batch[n + 1:]])
                break
    finally:
        # Stopped early: an envelope sent ahead for the message not sent now is dropped.
        connections.drop_unsent(account_id)
        if done:
            done[-1].write()
    return [r.write() for r in done]


def _gather(account_id: int) -> None:
    """Woken through the account's flag: let the mail sent in the next moments join this
    batch. Their sends see the flag still raised and ring no more, and one wake-up carries
    them all (a burst of sends would otherwise wake a worker per message, each paying the
    task, the claim and the final empty claim for one message). Other wake-ups (the
    sweeper's, or every send's without Redis) do not wait: nothing gathers behind them.
    The flag is lowered before the first claim: a send committed from then on rings again
    (``mailer.wakeups``)."""
    if wakeups.flag_raised(account_id):
        time.sleep(float(settings.MAILROOM_DRAIN_GATHER_SECONDS))
    wakeups.lower_flag(account_id)
