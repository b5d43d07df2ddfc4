import email
from email import policy

import pytest

from mailer.models import OutboxMessage
from tests.mailer.base import send, statuses
from tests.mailer.pipeline import FAST
from tests.workers import celery_worker, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]

BLOB = bytes(range(256)) * 400  # 100 KB, every byte value


def _status(msg):
    return OutboxMessage.objects.get(pk=msg.pk).status


def test_it_delivers_the_attachment_intact_and_no_bcc(owner, account, server):
    with celery_worker(env=FAST):
        msg = send(owner, account, to="a@example.org", bcc="hidden@example.org",
                   attachments=[("big.bin", "application/octet-stream", BLOB)])
        wait_until(lambda: _status(msg) == "sent", what="message sent")
    [got] = server.received
    parsed = email.message_from_bytes(got.data, policy=policy.default)
    assert "Bcc" not in parsed and b"hidden@example.org" not in got.data
    assert sorted(got.rcpt_tos) == ["a@example.org", "hidden@example.org"]
    [att] = parsed.iter_attachments()
    assert att.get_content() == BLOB
    msg.refresh_from_db()
    assert got.data == msg.read_eml() and got.message_id == msg.message_id


def test_it_records_a_partial_rejection(owner, account, server):
    server.script.rcpt["ghost@example.org"] = ["550 5.1.1 User unknown"]
    with celery_worker(env=FAST):
        msg = send(owner, account, to="a@example.org, ghost@example.org")
        wait_until(lambda: _status(msg) == "sent", what="message sent")
    assert statuses(msg) == {"a@example.org": "accepted", "ghost@example.org": "failed"}
    assert "User unknown" in msg.recipients.get(address="ghost@example.org").text


def test_it_retries_a_4xx_recipient_alone_until_sent(owner, account, server):
    server.script.rcpt["slow@example.org"] = ["450 4.2.1 Mailbox busy", "451 4.3.0 Still busy"]
    with celery_worker(beat=True, env=FAST) as worker:
        msg = send(owner, account, to="a@example.org, slow@example.org")
        wait_until(lambda: _status(msg) == "sent", timeout=30, what="message sent after retries")
    msg.refresh_from_db()
    assert msg.attempts == 3
    assert statuses(msg) == {"a@example.org": "accepted", "slow@example.org": "accepted"}
    assert [r.rcpt_tos for r in server.received] == [["a@example.org"], ["slow@example.org"]]
    assert worker.log.count(f"delivery entry={msg.pk} ") == 3


def test_it_fails_a_5xx_with_the_servers_words(owner, account, server):
    server.script.data = ["554 5.7.1 Spam detected, message refused"]
    with celery_worker(env=FAST):
        msg = send(owner, account)
        wait_until(lambda: _status(msg) == "failed", what="message failed")
    msg.refresh_from_db()
    assert "Spam detected, message refused" in msg.last_error
    assert server.received == []
