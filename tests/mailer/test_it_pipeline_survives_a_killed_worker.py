import pytest

from mailer.models import DeliveryAttempt, OutboxMessage
from tests.mailer.base import send
from tests.mailer.pipeline import FAST
from tests.workers import celery_worker, start_worker, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_before_the_end_of_data_leads_to_one_delivery(owner, account, server):
    server.script.stall_rcpt = 1  # the first worker gets stuck in the envelope
    doomed = start_worker(env=FAST)
    msg = send(owner, account)
    assert server.stalled.wait(30), "the worker never reached the server"
    assert OutboxMessage.objects.get(pk=msg.pk).status == "sending"
    doomed.kill()

    with celery_worker(beat=True, env=FAST):
        wait_until(lambda: OutboxMessage.objects.get(pk=msg.pk).status == "sent", timeout=30,
                   what="delivered after the lease expired")
    assert [r.message_id for r in server.received] == [msg.message_id]
    outcomes = list(DeliveryAttempt.objects.filter(message=msg).values_list("outcome", flat=True))
    assert outcomes == ["lease_expired", "sent"]
