import pytest

from mailer.models import OutboxMessage
from tests.mailer.base import send
from tests.mailer.pipeline import FAST
from tests.workers import celery_worker, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


def test_a_burst_of_200_messages_uses_a_handful_of_connections(owner, account, server):
    with celery_worker(concurrency=2, env=FAST):
        msgs = [send(owner, account, subject=f"burst {i}") for i in range(200)]
        wait_until(lambda: OutboxMessage.objects.filter(status="sent").count() == 200,
                   timeout=120, what="200 messages sent")
    assert len(server.received) == 200
    assert set(server.per_message_id().values()) == {1}
    assert {m.message_id for m in msgs} == set(server.per_message_id())
    # One connection per worker process, give or take a reconnect.
    assert server.connections <= 4
