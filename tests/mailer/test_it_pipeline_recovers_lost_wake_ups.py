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


def test_the_sweep_starts_the_imap_passes_only_when_they_have_work(owner, account):
    # The embedded filesystem broker hands a worker about ten messages a second; IMAP passes
    # ticked by beat whether or not any account has IMAP took most of that from delivery.
    from mailer.models import ImapSettings

    with celery_worker(beat=True, env=FAST) as worker:
        worker.wait_for_log("mailer.tasks.sweep[", count=4)
        assert "tasks.poll_reports[" not in worker.log
        assert "tasks.save_sent_copies[" not in worker.log
        # An IMAP side tracking reports (its server on a closed port: the poll just fails).
        ImapSettings.objects.create(account=account, host="127.0.0.1", port=9, security="tls",
                                    save_to_sent=False, track_reports=True)
        wait_until(lambda: ImapSettings.objects.get(account=account).polled_at is not None,
                   what="the mailbox polled", timeout=15)
    assert "Task mailer.tasks.poll_reports[" in worker.log
    assert "tasks.save_sent_copies[" not in worker.log
