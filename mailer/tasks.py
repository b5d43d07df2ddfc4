"""Celery tasks: thin wrappers over ``mailer.delivery`` (the broker only rings the bell).

Late acknowledgement: a worker that dies mid-task leaves the wake-up to be redelivered,
and the claim protocol makes a redelivered or duplicated wake-up harmless.
"""

import logging

from celery import shared_task
from celery.signals import worker_process_shutdown
from django.conf import settings
from django.db import transaction

from mailer import counts, delivery, services, wakeups

log = logging.getLogger("mailer.tasks")


@shared_task(acks_late=True, ignore_result=True)
def deliver(message_id: int) -> int:
    """Deliver the message and the rest of its account's due mail (``delivery.drain``);
    then, if some was accepted for an account that keeps a Sent copy, save the copies."""
    from mailer.imap import sentcopy

    outcomes = delivery.drain(message_id)
    if sentcopy.wanted_after(message_id, outcomes):
        _hand_over_now(save_sent_copies, "the Sent copies")
    return len(outcomes)


@shared_task(acks_late=True, ignore_result=True)
def sweep() -> int:
    """Beat's sweep (``delivery.sweep``); then the IMAP passes, each as its own task (a
    slow IMAP server never holds up the sweep), handed over only when it has work: an
    idle broker stays idle. (As beat entries of their own they tripled beat's traffic:
    the embedded filesystem broker hands a worker about ten messages a second.)"""
    from mailer.imap import bounces, sentcopy

    enqueued = len(delivery.sweep().enqueued)
    # ``expires``: a pass still waiting when the next sweep hands over another is dropped,
    # so a busy worker does not pile them up.
    expires = settings.MAILROOM_SWEEP_SECONDS
    if sentcopy.any_due():
        _hand_over_now(save_sent_copies, "the Sent copies", expires=expires)
    if bounces.any_due():
        _hand_over_now(poll_reports, "the delivery-report polls", expires=expires)
    return enqueued


@shared_task(acks_late=True, ignore_result=True)
def save_sent_copies() -> int:
    """Beat's pass over the copies due in Sent folders (``mailer.imap.sentcopy``)."""
    from mailer.imap import sentcopy

    return sentcopy.save_due()


@shared_task(acks_late=True, ignore_result=True)
def poll_reports() -> int:
    """Beat's pass over the mailboxes due for delivery reports (``mailer.imap.bounces``)."""
    from mailer.imap import bounces

    return bounces.poll_due()


@shared_task(acks_late=True, ignore_result=True)
def release_holds() -> int:
    return len(delivery.release_holds())


@shared_task(acks_late=True, ignore_result=True)
def compact_counts() -> int:
    """Fold the history's tab counters (``mailer.counts.compact``)."""
    return counts.compact()


@shared_task(acks_late=True, ignore_result=True)
def check_account(check_id: int) -> bool:
    """Run one "Test connection" (``services.run_check``); the result goes to its row."""
    return services.run_check(check_id) is not None


@shared_task(acks_late=True, ignore_result=True)
def oauth_sign_in(sign_in_id: int) -> str | None:
    """Run the next step of one "Sign in with …" (``mailer.oauth.signins.run``)."""
    from mailer.oauth import signins

    return signins.run(sign_in_id)


@worker_process_shutdown.connect
def _close_connections(**kwargs) -> None:
    delivery.connections.close_all()


def wake(message_id: int, account_id: int | None = None) -> None:
    """Wake a worker for ``message_id`` once the current transaction commits. A broker
    that is down must not undo or fail the send: the row is committed, and the sweeper
    will find it (ARCHITECTURE invariant 1). ``account_id``: see ``publish``."""
    transaction.on_commit(lambda: publish(message_id, account_id=account_id))


# A wake-up's retry policy: one quick retry, not kombu's default back-off (see publish).
QUICK_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0}


def wake_check(check_id: int) -> None:
    """Hand a connection test to a worker once the current transaction commits. A broker
    that is down leaves the check waiting; its page says so after the deadline."""
    _hand_over(check_account, check_id, "connection test")


def wake_sign_in(sign_in_id: int) -> None:
    """Hand the next step of a "Sign in with …" to a worker, as ``wake_check`` does."""
    _hand_over(oauth_sign_in, sign_in_id, "sign-in")


def _hand_over(task, pk: int, what: str) -> None:
    transaction.on_commit(lambda: _hand_over_now(task, f"{what} {pk}", pk))


def _hand_over_now(task, what: str, *args, **options) -> None:
    try:
        task.apply_async(args, retry=True, retry_policy=QUICK_RETRY, **options)
    except Exception as exc:  # kombu raises several unrelated classes for a dead broker
        log.warning("could not hand %s to a worker (%s)", what, exc)


def publish(message_id: int, *, account_id: int | None = None) -> None:
    """Send the wake-up. With ``account_id`` (and Redis), wake-ups coalesce per account:
    while one for the account waits in the queue, its drain not yet started, another
    send adds nothing, since that drain will claim this message too (``delivery.drain``
    lowers the flag before its first claim; see ``mailer.wakeups``)."""
    if account_id is not None and not wakeups.raise_flag(account_id):
        return
    try:
        # One quick retry (a pooled broker connection may just have been reset), not
        # kombu's default of several with back-off: with the broker down, send_draft would
        # otherwise hang ~0.6 s per message for a wake-up the sweeper makes up for anyway.
        deliver.apply_async((message_id,), retry=True, retry_policy=QUICK_RETRY)
    except Exception as exc:  # kombu raises several unrelated classes for a dead broker
        log.warning("could not wake a worker for message %s (%s); the sweeper will send it",
                    message_id, exc)
        if account_id is not None:
            wakeups.lower_flag(account_id)
