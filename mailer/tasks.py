"""Celery tasks: thin wrappers over ``mailer.delivery`` (the broker only rings the bell).

Late acknowledgement: a worker that dies mid-task leaves the wake-up to be redelivered,
and the claim protocol makes a redelivered or duplicated wake-up harmless.
"""

import logging

from celery import shared_task
from celery.signals import worker_process_shutdown
from django.conf import settings
from django.db import transaction

from mailer import counts, delivery, rediskeys, services

log = logging.getLogger("mailer.tasks")


@shared_task(acks_late=True, ignore_result=True)
def deliver(message_id: int) -> int:
    """Deliver the message and the rest of its account's due mail (``delivery.drain``)."""
    return len(delivery.drain(message_id))


@shared_task(acks_late=True, ignore_result=True)
def sweep() -> int:
    return len(delivery.sweep().enqueued)


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
    def send() -> None:
        try:
            check_account.apply_async((check_id,), retry=True, retry_policy=QUICK_RETRY)
        except Exception as exc:  # kombu raises several unrelated classes for a dead broker
            log.warning("could not hand connection test %s to a worker (%s)", check_id, exc)

    transaction.on_commit(send)


def publish(message_id: int, *, account_id: int | None = None) -> None:
    """Send the wake-up. With ``account_id`` (and Redis), wake-ups coalesce per account:
    while one for the account waits in the queue, its drain not yet started, another
    send adds nothing, since that drain will claim this message too (``delivery.drain``
    lowers the flag before its first claim; see ``flag_raised``)."""
    if account_id is not None and not _raise_flag(account_id):
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
            lower_flag(account_id)


# --- the per-account wake-up flag ------------------------------------------------------------
#
# A key in Redis, set (SET NX) by the publish that rings for an account and deleted by the
# drain it starts, before that drain's first claim. A send that finds the flag set commits
# its message before that claim runs (its commit came before the publish), so the pending
# drain sees it: no wake-up is needed. One that finds the flag cleared rings again. The
# flag expires after MAILROOM_SWEEP_SECONDS, so a wake-up lost in the broker delays an
# account's mail by that at most before sends ring again (and the sweeper finds the
# messages meanwhile). Without Redis (the embedded default) every send rings.


def _flag_key(account_id: int) -> str:
    return rediskeys.key("wake", account_id)


def _raise_flag(account_id: int) -> bool:
    """True when this publish must ring (the flag was down, or cannot be asked)."""
    client = rediskeys.client()
    if client is None:
        return True
    try:
        ttl = max(1, int(settings.MAILROOM_SWEEP_SECONDS))
        return bool(client.set(_flag_key(account_id), b"1", nx=True, ex=ttl))
    except rediskeys.errors():
        return True  # Redis is down: ring; a duplicate wake-up is harmless


def lower_flag(account_id: int) -> None:
    """A drain of the account starts claiming: from now on a send must ring again."""
    client = rediskeys.client()
    if client is None:
        return
    try:
        client.delete(_flag_key(account_id))
    except rediskeys.errors():
        pass  # the flag expires by itself; until then the sweeper covers the account


def flag_raised(account_id: int) -> bool:
    """Whether a wake-up for the account is waiting (False without Redis, or when Redis
    cannot be asked)."""
    client = rediskeys.client()
    if client is None:
        return False
    try:
        return bool(client.exists(_flag_key(account_id)))
    except rediskeys.errors():
        return False
