"""Celery tasks: thin wrappers over ``mailer.delivery`` (the broker only rings the bell).

Late acknowledgement: a worker that dies mid-task leaves the wake-up to be redelivered,
and the claim protocol makes a redelivered or duplicated wake-up harmless.
"""

from celery import shared_task
from celery.signals import worker_process_shutdown

from mailer import delivery


@shared_task(acks_late=True, ignore_result=True)
def deliver(message_id: int) -> str | None:
    return delivery.deliver(message_id)


@shared_task(acks_late=True, ignore_result=True)
def sweep() -> int:
    return len(delivery.sweep().enqueued)


@worker_process_shutdown.connect
def _close_connections(**kwargs) -> None:
    delivery.connections.close_all()
