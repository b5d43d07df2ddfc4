from datetime import timedelta

import time_machine
from django.utils import timezone

from mailer import delivery, services
from mailer.delivery import attempt as attempt_module
from mailer.models import DeliveryAttempt
from tests.mailer.base import send


def _claim_and_vanish(msg, *, after_end_of_data: bool):
    """A worker claims the message and dies (before or after the end of the data)."""
    claimed, attempt, _ = delivery.claim(msg.pk, worker="doomed")
    if after_end_of_data:
        attempt_module.mark_end_of_data(msg.pk, attempt.attempt_id)
    return attempt


def test_it_retries_a_message_whose_worker_died_before_the_end_of_data(
    owner, account, server, settings
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = send(owner, account)
        attempt = _claim_and_vanish(msg, after_end_of_data=False)
        assert delivery.sweep(enqueue=lambda pk: None).reclaimed == 0  # lease still valid
    with time_machine.travel(
        start + timedelta(seconds=settings.MAILROOM_LEASE_SECONDS + 1), tick=False
    ):
        woken = []
        report = delivery.sweep(enqueue=woken.append)
        assert report.reclaimed == 1 and woken == [msg.pk]
        msg.refresh_from_db()
        assert msg.status == "queued" and msg.attempt_id is None
        assert DeliveryAttempt.objects.get(pk=attempt.pk).outcome == "lease_expired"
        assert delivery.deliver(msg.pk) == "sent"
    assert len(server.received) == 1


def test_it_marks_unknown_a_message_whose_worker_died_after_the_end_of_data(
    owner, account, server, settings
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = send(owner, account)
        _claim_and_vanish(msg, after_end_of_data=True)
    with time_machine.travel(
        start + timedelta(seconds=settings.MAILROOM_LEASE_SECONDS + 1), tick=False
    ):
        woken = []
        report = delivery.sweep(enqueue=woken.append)
        assert report.unknown == 1 and woken == []
        msg.refresh_from_db()
        assert msg.status == "unknown" and "may have it" in msg.last_error
        # Never resent blindly; the user can resend it in one action.
        assert delivery.sweep(enqueue=woken.append).enqueued == []
        services.resend_unknown(owner, msg)
        assert delivery.deliver(msg.pk) == "sent"
    assert len(server.received) == 1


def test_it_retries_unknown_when_the_setting_prefers_duplicates(owner, account, settings):
    settings.MAILROOM_RETRY_UNKNOWN = True
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = send(owner, account)
        _claim_and_vanish(msg, after_end_of_data=True)
    with time_machine.travel(
        start + timedelta(seconds=settings.MAILROOM_LEASE_SECONDS + 1), tick=False
    ):
        assert delivery.sweep(enqueue=lambda pk: None).reclaimed == 1
    msg.refresh_from_db()
    assert msg.status == "queued"


def test_it_does_not_send_when_the_lease_was_lost_before_the_end_of_data(
    owner, account, server, settings
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = send(owner, account)
        _, attempt, _ = delivery.claim(msg.pk, worker="slow")
    # The slow worker's lease ran out and another worker took the message over.
    with time_machine.travel(
        start + timedelta(seconds=settings.MAILROOM_LEASE_SECONDS + 1), tick=False
    ):
        delivery.sweep(enqueue=lambda pk: None)
        _, attempt2, _ = delivery.claim(msg.pk, worker="fresh")
        assert attempt2.attempt_id != attempt.attempt_id
        # The slow worker reaches its end of data now: it must stop and record nothing.
        try:
            attempt_module.mark_end_of_data(msg.pk, attempt.attempt_id)
        except delivery.LeaseLost:
            pass
        else:
            raise AssertionError("a worker without its lease went on to the end of data")
    msg.refresh_from_db()
    assert msg.status == "sending" and msg.attempt_id == attempt2.attempt_id
    assert server.received == []
