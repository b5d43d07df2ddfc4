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
        wait_until(lambda: OutboxMessage.objects.get(pk=msg.pk).status == "sent", timeout=60,
                   what="delivered after the lease expired")
    assert [r.message_id for r in server.received] == [msg.message_id]
    outcomes = list(DeliveryAttempt.objects.filter(message=msg).values_list("outcome", flat=True))
    assert outcomes == ["lease_expired", "sent"]


def test_a_worker_killed_mid_batch_leaves_each_message_sent_once_or_unknown_by_its_own_mark(
    owner, account, server
):
    msgs = [send(owner, account, subject=f"batch {i}") for i in range(5)]
    # The first two go through; the third one's data is taken and the reply never comes.
    server.script.stall_after, server.script.stall_data = 2, 1
    doomed = start_worker(env=FAST)
    assert server.stalled.wait(30), "the worker never reached the third message"
    doomed.kill()

    with celery_worker(beat=True, env=FAST):
        wait_until(
            lambda: OutboxMessage.objects.filter(status__in=["sent", "unknown"]).count() == 5,
            timeout=60,
            what="every message sent or unknown",  # three leases to expire, on a busy CI
        )
    status = {m.pk: OutboxMessage.objects.get(pk=m.pk).status for m in msgs}
    assert status == {**{m.pk: "sent" for m in msgs}, msgs[2].pk: "unknown"}
    assert server.per_message_id() == {m.message_id: 1 for m in msgs if m is not msgs[2]}
    # Unknown only where that message's own end of data was marked; the rest of the batch
    # (claimed, never started) was retried.
    marked = DeliveryAttempt.objects.filter(end_of_data_at__isnull=False)
    assert set(marked.exclude(outcome="sent").values_list("message_id", flat=True)) == {msgs[2].pk}
    for m in msgs[3:]:
        outcomes = DeliveryAttempt.objects.filter(message=m).order_by("pk")
        assert [a.outcome for a in outcomes] == ["lease_expired", "sent"]
        assert outcomes[0].end_of_data_at is None
