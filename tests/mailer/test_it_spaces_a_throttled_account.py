"""A provider that says "slow down" (4.7.x, 421, 454) slows the account (issue 4): no
attempt until the spacing has passed, the spacing doubles while it keeps saying so, one
probe at a time when it is over, full speed once the provider accepts again."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from mailer import delivery
from mailer.models import DeliveryAttempt
from tests.mailer.base import make_account, send


@pytest.fixture
def account(owner, smtp_server, settings):
    settings.MAILROOM_THROTTLE_SECONDS = 60
    return make_account(owner, smtp_server)


def test_it_spaces_attempts_while_the_provider_says_slow_down(owner, account, smtp_server):
    smtp_server.handler.reply_at("mail", "421 4.7.0 Too many messages, slow down", times=2)
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        msgs = [send(owner, account) for _ in range(4)]
        assert delivery.deliver(msgs[0].pk) == "throttled"
        account.refresh_from_db()
        first_gap = account.throttled_until - timezone.now()
        assert timedelta(seconds=58) < first_gap <= timedelta(seconds=60)
        # the message that was throttled waits too, and says why
        msgs[0].refresh_from_db()
        assert msgs[0].next_attempt_at >= account.throttled_until
        assert "slow down" in msgs[0].wait_reason

        # nobody attempts anything for the account until then
        assert [delivery.deliver(m.pk) for m in msgs[1:]] == [None] * 3
        clock.shift(timedelta(seconds=30))
        assert delivery.deliver(msgs[1].pk) is None

        # said again: the spacing doubles
        clock.shift(timedelta(seconds=31))
        assert delivery.deliver(msgs[1].pk) == "throttled"
        account.refresh_from_db()
        second_gap = account.throttled_until - timezone.now()
        assert timedelta(seconds=118) < second_gap <= timedelta(seconds=120)

        # over: one probe at a time, the others wait for its answer
        clock.shift(timedelta(seconds=121))
        probe = delivery.claim(msgs[2].pk, worker="w1")
        assert probe is not None
        assert delivery.claim(msgs[3].pk, worker="w2") is None
        delivery.connections.close_all()
        assert delivery.deliver(msgs[2].pk) is None  # already claimed by w1
        assert delivery.deliver_claimed(*probe) == "sent"

        # the provider took it: full speed again
        account.refresh_from_db()
        assert account.throttled_until is None
        assert delivery.deliver(msgs[3].pk) == "sent"

    starts = list(DeliveryAttempt.objects.filter(message__account=account)
                  .order_by("started_at").values_list("started_at", flat=True))
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 60 and gaps[1] >= 120
    assert len(smtp_server.messages) == 2
