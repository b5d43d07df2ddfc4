"""In a batch over a reused connection, the next message's MAIL, RCPTs and DATA go out right
behind the end of the message before (RFC 2920; ``SMTPClient.next_envelope_hook``), so each
message after the first costs one round trip, not two. Its own end of data still waits for
its own mark, and a message that is not sent after all (the batch stopped) leaves nothing
behind: its DATA is never ended, the connection is dropped and the message is sent later,
once.

The server is real (aiosmtpd). Runs on SQLite and again on PostgreSQL (pass 2)."""

from __future__ import annotations

import email
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from mailer import delivery
from mailer.models import DeliveryAttempt, OutboxMessage
from tests.mailer.base import make_account, send

pytestmark = pytest.mark.pipeline

AHEAD = "[the envelope below went out right behind the previous message's data]"


def _subjects(server) -> list[str]:
    return [email.message_from_bytes(m.content)["Subject"] for m in server.messages]


def _count_mails(server) -> list[str]:
    """Every MAIL the server reads (delivered or not), through the real handler."""
    mails, real = [], server.handler.handle_MAIL

    async def counting(smtp, session, envelope, address, mail_options):
        mails.append(address)
        return await real(smtp, session, envelope, address, mail_options)

    server.handler.handle_MAIL = counting
    return mails


def _transcript(message) -> list[str]:
    """The transcript of the message's last attempt."""
    attempt = DeliveryAttempt.objects.filter(message=message).order_by("pk").last()
    return attempt.transcript.splitlines()


def test_each_message_after_the_first_has_its_envelope_sent_ahead(owner, smtp_server):
    account = make_account(owner, smtp_server)
    messages = [send(owner, account, subject=f"n{i}") for i in range(3)]
    opened = delivery.connections.opened

    assert delivery.drain(messages[0].pk) == ["sent"] * 3

    assert _subjects(smtp_server) == ["n0", "n1", "n2"]
    assert delivery.connections.opened - opened == 1
    first = _transcript(messages[0])
    assert AHEAD not in first and sum(line.startswith("C: MAIL") for line in first) == 1
    for message in messages[1:]:
        lines = _transcript(message)
        # Its own envelope, said to have gone ahead, then its replies and its data.
        assert lines[0] == AHEAD
        assert lines[1].startswith("C: MAIL FROM:<owner@example.com>")
        assert sum(line.startswith("C: MAIL") for line in lines) == 1
        assert "C: DATA" in lines and lines[-1].startswith("S: 250")
    # The last message had no next one: nothing is waiting on the kept connection.
    assert delivery.connections._conns[account.pk].client.pending_envelope is None


def test_a_message_refused_at_rcpt_ahead_fails_with_the_servers_words(owner, smtp_server):
    smtp_server.handler.reply_at("rcpt", "550 5.1.1 No such user here",
                                 address="nobody@example.org")
    account = make_account(owner, smtp_server)
    one = send(owner, account, subject="one")
    refused = send(owner, account, subject="two", to="nobody@example.org")
    three = send(owner, account, subject="three")

    assert delivery.drain(one.pk) == ["sent", "failed", "sent"]

    assert _subjects(smtp_server) == ["one", "three"]
    refused.refresh_from_db()
    assert refused.status == OutboxMessage.Status.FAILED
    assert "No such user here" in refused.recipients.get().text
    assert _transcript(refused)[0] == AHEAD
    three.refresh_from_db()
    assert three.status == OutboxMessage.Status.SENT


def test_a_message_held_back_by_the_quota_is_not_sent_through_its_envelope_ahead(
    owner, smtp_server
):
    """Message 3's envelope went out behind message 2's data; then the quota holds message 3
    back and the batch stops. The connection, its DATA waiting, is dropped: the server never
    gets message 3, which goes out later, once, on a new connection."""
    account = make_account(owner, smtp_server, quota_per_minute=2)
    mails = _count_mails(smtp_server)
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        messages = [send(owner, account, subject=f"q{i}") for i in range(4)]
        assert delivery.drain(messages[0].pk) == ["sent", "sent", "quota"]

        assert _subjects(smtp_server) == ["q0", "q1"]
        assert len(mails) == 3  # message 3's envelope went out; its data never ended
        assert account.pk not in delivery.connections._conns
        held = OutboxMessage.objects.get(pk=messages[2].pk)
        assert held.status == OutboxMessage.Status.DEFERRED and "quota" in held.wait_reason

        clock.shift(timedelta(seconds=61))
        opened = delivery.connections.opened
        assert delivery.drain(messages[2].pk) == ["sent", "sent"]
        assert delivery.connections.opened - opened == 1  # a new connection

    assert sorted(_subjects(smtp_server)) == ["q0", "q1", "q2", "q3"]
    assert len(mails) == 5
