"""Celery tasks: thin wrappers over ``mailer.delivery`` (the broker only rings the bell).

Late acknowledgement: a worker that dies mid-task leaves the wake-up to be redelivered,
and the claim protocol makes a redelivered or duplicated wake-up harmless.
"""

import logging

from celery import shared_task
from celery.signals import worker_process_shutdown
from django.db import transaction

from mailer import delivery

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


@worker_process_shutdown.connect
def _close_connections(**kwargs) -> None:
    delivery.connections.close_all()


def wake(message_id: int) -> None:
    """Wake a worker for ``message_id`` once the current transaction commits. A broker
    that is down must not undo or fail the send: the row is committed, and the sweeper
    will find it (ARCHITECTURE invariant 1)."""
    transaction.on_commit(lambda: publish(message_id))


def publish(message_id: int) -> None:
    try:
        # One quick retry (a pooled broker connection may just have been reset), not
        # kombu's default of several with back-off: with the broker down, send_draft would
        # otherwise hang ~0.6 s per message for a wake-up the sweeper makes up for anyway.
        deliver.apply_async(
            (message_id,), retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0},
        )
    except Exception as exc:  # kombu raises several unrelated classes for a dead broker
        log.warning("could not wake a worker for message %s (%s); the sweeper will send it",
                    message_id, exc)
