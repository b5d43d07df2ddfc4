from datetime import timedelta

import time_machine
from django.utils import timezone

from mailer import delivery
from tests.mailer.base import send, statuses


def test_it_defers_a_4xx_recipient_and_later_sends_to_it_alone(owner, account, server, settings):
    server.script.rcpt["busy@example.org"] = ["451 4.2.0 Mailbox busy, try later"]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = send(owner, account, to="alice@example.org, busy@example.org")
        assert delivery.deliver(msg.pk) == "partial"
        msg.refresh_from_db()
        assert msg.status == "deferred"
        assert statuses(msg) == {"alice@example.org": "accepted", "busy@example.org": "deferred"}
        # Postfix's rule: the first wait is the minimum backoff.
        assert msg.next_attempt_at == start + timedelta(
            seconds=settings.MAILROOM_MIN_BACKOFF_SECONDS
        )
        assert "Mailbox busy" in msg.last_error
        # Not due yet: the sweeper leaves it alone and a stray wake-up does nothing.
        assert delivery.sweep(enqueue=lambda pk: None).enqueued == []
        assert delivery.deliver(msg.pk) is None

    with time_machine.travel(start + timedelta(seconds=301), tick=False):
        woken = []
        assert delivery.sweep(enqueue=woken.append).enqueued == [msg.pk]
        assert woken == [msg.pk]
        assert delivery.deliver(msg.pk) == "sent"

    msg.refresh_from_db()
    assert msg.status == "sent" and msg.attempts == 2
    assert statuses(msg) == {"alice@example.org": "accepted", "busy@example.org": "accepted"}
    assert [r.rcpt_tos for r in server.received] == [["alice@example.org"], ["busy@example.org"]]
    # Every try sends the same bytes with the same Message-ID.
    assert server.received[0].data == server.received[1].data == msg.read_eml()


def test_it_spaces_retries_by_the_message_age(owner, account, server, settings):
    settings.MAILROOM_MIN_BACKOFF_SECONDS = 300
    settings.MAILROOM_MAX_BACKOFF_SECONDS = 4000
    server.script.data = ["451 4.3.0 Try again later"] * 3
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        msg = send(owner, account)
        waits = []
        for _ in range(3):
            assert delivery.deliver(msg.pk) == "deferred"
            msg.refresh_from_db()
            waits.append((msg.next_attempt_at - timezone.now()).total_seconds())
            clock.move_to(msg.next_attempt_at)
            delivery.sweep(enqueue=lambda pk: None)
    assert waits == [300, 300, 600]
