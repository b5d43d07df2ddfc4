from datetime import timedelta

import time_machine
from django.utils import timezone

from mailer import delivery
from tests.mailer.base import send


def test_it_fails_a_deferred_message_with_the_last_error_once_too_old(
    owner, account, server, settings
):
    settings.MAILROOM_MAX_MESSAGE_AGE_SECONDS = 3600
    server.script.data = ["452 4.3.1 Insufficient system storage"] * 100
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        msg = send(owner, account)
        outcomes = []
        while True:
            outcomes.append(delivery.deliver(msg.pk))
            msg.refresh_from_db()
            if msg.status != "deferred":
                break
            # The last try is never scheduled beyond the maximum age.
            assert msg.next_attempt_at <= start + timedelta(seconds=3600)
            clock.move_to(msg.next_attempt_at)
    assert outcomes[-1] == "failed" and set(outcomes[:-1]) == {"deferred"}
    assert msg.status == "failed"
    assert msg.last_error.startswith("Gave up after 1 hour(s)")
    assert "Insufficient system storage" in msg.last_error
    assert msg.recipients.get().status == "failed"
