from datetime import timedelta

import time_machine
from django.utils import timezone

from mailer import delivery
from tests.mailer.base import send


def test_it_sends_scheduled_mail_only_when_its_time_comes(owner, account, server):
    start = timezone.now()
    later = start + timedelta(hours=2)
    with time_machine.travel(start, tick=False):
        msg = send(owner, account, send_at=later)
        assert msg.status == "scheduled" and msg.next_attempt_at == later
        assert delivery.sweep(enqueue=lambda pk: None).enqueued == []
        assert delivery.deliver(msg.pk) is None
    with time_machine.travel(later - timedelta(seconds=1), tick=False):
        assert delivery.sweep(enqueue=lambda pk: None).enqueued == []
    with time_machine.travel(later, tick=False):
        woken = []
        delivery.sweep(enqueue=woken.append)
        assert woken == [msg.pk]
        msg.refresh_from_db()
        assert msg.status == "queued"
        assert delivery.deliver(msg.pk) == "sent"
    assert len(server.received) == 1


def test_it_holds_a_message_for_the_undo_window(owner, account, server):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = send(owner, account, hold_seconds=10)
        assert msg.status == "scheduled" and msg.hold_until == start + timedelta(seconds=10)
        assert delivery.deliver(msg.pk) is None
    with time_machine.travel(start + timedelta(seconds=10), tick=False):
        woken = []
        delivery.sweep(enqueue=woken.append)
        assert woken == [msg.pk]
        assert delivery.deliver(msg.pk) == "sent"
