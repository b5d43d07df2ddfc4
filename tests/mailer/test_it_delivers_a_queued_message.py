import email
import logging
from email import policy

from mailer import delivery
from mailer.models import DeliveryAttempt, OutboxMessage
from tests.mailer.base import send, statuses

PDF = bytes(range(256)) * 40  # binary, every byte value, 10 KB


def test_it_delivers_the_stored_bytes_to_every_recipient(owner, account, server, caplog):
    msg = send(owner, account, to="Alice <alice@example.org>", cc="carol@example.org",
               bcc="bob@example.org", attachments=[("report.pdf", "application/pdf", PDF)])
    caplog.set_level(logging.INFO, logger="mailer.delivery")

    assert delivery.deliver(msg.pk) == "sent"

    msg.refresh_from_db()
    assert msg.status == OutboxMessage.Status.SENT
    assert msg.sent_at is not None and msg.attempts == 1 and msg.attempt_id is None
    assert statuses(msg) == {"alice@example.org": "accepted", "carol@example.org": "accepted",
                             "bob@example.org": "accepted"}
    [got] = server.received
    assert got.data == msg.read_eml()
    assert sorted(got.rcpt_tos) == ["alice@example.org", "bob@example.org", "carol@example.org"]
    parsed = email.message_from_bytes(got.data, policy=policy.default)
    assert "Bcc" not in parsed and b"bob@example.org" not in got.data
    [att] = list(parsed.iter_attachments())
    assert att.get_filename() == "report.pdf" and att.get_content() == PDF
    assert got.message_id == msg.message_id

    attempt = DeliveryAttempt.objects.get(message=msg)
    assert attempt.outcome == "sent" and attempt.reply_code == 250
    assert attempt.end_of_data_at is not None and attempt.finished_at >= attempt.end_of_data_at
    assert any(line.startswith("C: MAIL FROM") for line in attempt.transcript.splitlines())
    assert f"delivery entry={msg.pk} account={account.pk} outcome=sent seconds=" in caplog.text


def test_it_does_nothing_for_a_message_already_sent(owner, account, server):
    msg = send(owner, account)
    assert delivery.deliver(msg.pk) == "sent"
    assert delivery.deliver(msg.pk) is None
    assert len(server.received) == 1
