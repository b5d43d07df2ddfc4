"""A per-minute quota of 5 with 12 messages: 5 now, the rest later, none failed (issue 4).
Runs on the database log here and on Redis in the services pass (MAILROOM_REDIS_URL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from mailer import delivery
from mailer.models import DeliveryAttempt, OutboxMessage
from tests.mailer.base import make_account, send


@pytest.fixture
def account(owner, smtp_server):
    return make_account(owner, smtp_server, quota_per_minute=5)


def deliver_due(ids=()) -> list[str | None]:
    """What one worker does: deliver what it was woken for and what the sweeper finds."""
    woken = list(ids)
    delivery.sweep(enqueue=woken.append)
    return [delivery.deliver(pk) for pk in dict.fromkeys(woken)]


def counts(account) -> dict[str, int]:
    rows = OutboxMessage.objects.filter(account=account).values_list("status", flat=True)
    return {s: list(rows).count(s) for s in set(rows)}


@pytest.mark.pipeline
def test_it_sends_five_now_and_the_rest_later(owner, account, smtp_server):
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        ids = [send(owner, account).pk for _ in range(12)]
        outcomes = deliver_due(ids)
        assert outcomes.count("sent") == 5 and outcomes.count("quota") == 7
        assert counts(account) == {"sent": 5, "deferred": 7}
        waiting = OutboxMessage.objects.filter(account=account, status="deferred")
        for msg in waiting:
            # deferred to when the quota allows, and the page can say why
            assert start + timedelta(seconds=59) < msg.next_attempt_at
            assert msg.next_attempt_at <= timezone.now() + timedelta(seconds=60)
            assert "quota" in msg.wait_reason and msg.attempts == 0
        # nothing more goes out before the minute is over
        assert [o for o in deliver_due(ids) if o == "sent"] == []

        clock.shift(timedelta(seconds=61))
        deliver_due()
        assert counts(account) == {"sent": 10, "deferred": 2}
        clock.shift(timedelta(seconds=61))
        deliver_due()
        assert counts(account) == {"sent": 12}

    assert len(smtp_server.messages) == 12
    assert not DeliveryAttempt.objects.filter(message__account=account, outcome="failed").exists()
    # a quota wait is not an attempt that failed: each message has exactly one "sent"
    sent = DeliveryAttempt.objects.filter(message__account=account, outcome="sent")
    assert sent.count() == 12 and sent.values("message").distinct().count() == 12


def test_an_account_without_a_quota_is_not_held_back(owner, smtp_server):
    account = make_account(owner, smtp_server, label="Unlimited")
    ids = [send(owner, account).pk for _ in range(12)]
    assert deliver_due(ids).count("sent") == 12
