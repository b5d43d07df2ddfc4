import pytest

from mailer.models import OutboxMessage
from tests.mailer.base import send
from tests.mailer.pipeline import FAST
from tests.workers import celery_worker, purge_queue, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


def test_the_sweeper_delivers_mail_whose_wake_up_was_lost(owner, account, server):
    # No worker at send time, and the wake-ups are then lost (as when the broker is down
    # or its queue is flushed): only the database knows about the mail.
    msgs = [send(owner, account, subject=f"lost {i}") for i in range(3)]
    purge_queue()
    with celery_worker(beat=True, env=FAST) as worker:
        wait_until(lambda: OutboxMessage.objects.filter(status="sent").count() == 3,
                   what="lost mail delivered by the sweeper")
    assert sorted(r.message_id for r in server.received) == sorted(m.message_id for m in msgs)
    assert "sweep enqueued=" in worker.log
