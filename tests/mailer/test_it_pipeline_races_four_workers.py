"""Four worker processes on PostgreSQL over 500 messages, with every wake-up sent twice
and the sweeper running in two of them: every message reaches the server exactly once."""

import pytest
from django.db import connection

from mailer import tasks
from mailer.models import DeliveryAttempt, OutboxMessage
from tests.conftest import require_service
from tests.mailer.base import send
from tests.mailer.pipeline import FAST
from tests.workers import Worker, wait_until

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_four_workers_send_every_message_exactly_once(owner, account, server):
    require_service(connection.vendor == "postgresql", "PostgreSQL (the race needs real row locks)")
    workers = [Worker(beat=i < 2, env=FAST) for i in range(4)]
    try:
        for w in workers:
            w.wait_ready()
        msgs = [send(owner, account, subject=f"race {i}") for i in range(500)]
        for m in msgs:  # a duplicated wake-up for every message: the claim must hold
            tasks.deliver.delay(m.pk)
        wait_until(lambda: OutboxMessage.objects.filter(status="sent").count() == 500,
                   timeout=240, what="500 messages sent")
    finally:
        for w in workers:
            w.stop()
    counts = server.per_message_id()
    assert len(counts) == 500 and set(counts.values()) == {1}
    assert counts.keys() == {m.message_id for m in msgs}
    assert DeliveryAttempt.objects.filter(outcome="sent").count() == 500
    assert not DeliveryAttempt.objects.exclude(outcome="sent").exists()
    # The work really was shared.
    assert sum(1 for w in workers if "outcome=sent" in w.log) >= 2
