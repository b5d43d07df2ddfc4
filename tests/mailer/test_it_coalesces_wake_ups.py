"""Wake-ups coalesce per account (``tasks.publish`` with the account, on Redis): while one
waits for a worker, further sends on that account ring no more, since the drain it starts
claims their messages too; once that drain has started, the next send rings again.

``apply_async`` is replaced by a recorder here: a real publish would leave wake-ups in this
run's queue for the real workers of other tests to pick up. The path through a real broker
and worker is covered by the pipeline tests (test_it_pipeline_*), which run with these
flags on Redis in the services pass."""

from __future__ import annotations

import threading
import time
import uuid
from unittest import mock

import pytest
from django.db import connection

from mailer import delivery, rediskeys, tasks, wakeups
from tests.conftest import TEST_REDIS_URL, redis_answers, require_service
from tests.mailer.base import make_account, send

REDIS_URL = TEST_REDIS_URL


@pytest.fixture
def flags(settings):
    require_service(redis_answers(), f"Redis at {REDIS_URL}")
    settings.MAILROOM_REDIS_URL = REDIS_URL
    settings.MAILROOM_REDIS_PREFIX = f"mailroom-test-{uuid.uuid4().hex}"
    yield
    client = rediskeys.client()
    for key in client.scan_iter(f"{settings.MAILROOM_REDIS_PREFIX}:*"):
        client.delete(key)


@pytest.fixture
def rung():
    with mock.patch.object(tasks.deliver, "apply_async") as recorder:
        yield recorder


def _send(owner, account, capture, **fields):
    with capture(execute=True):
        return send(owner, account, **fields)


@pytest.mark.services
def test_sends_ring_once_until_the_drain_starts(owner, account, server, flags, rung,
                                                django_capture_on_commit_callbacks):
    first = _send(owner, account, django_capture_on_commit_callbacks, subject="one")
    _send(owner, account, django_capture_on_commit_callbacks, subject="two")
    assert rung.call_count == 1 and wakeups.flag_raised(account.pk)
    assert rung.call_args.args[0] == (first.pk,)

    # The one wake-up's drain takes both, and lowers the flag before claiming.
    assert delivery.drain(first.pk) == ["sent", "sent"]
    assert not wakeups.flag_raised(account.pk)
    assert len(server.received) == 2

    _send(owner, account, django_capture_on_commit_callbacks, subject="three")
    assert rung.call_count == 2


@pytest.mark.services
def test_each_account_has_its_own_flag(owner, account, server, flags, rung,
                                       django_capture_on_commit_callbacks):
    other = make_account(owner, server, label="Other")
    _send(owner, account, django_capture_on_commit_callbacks)
    _send(owner, other, django_capture_on_commit_callbacks)
    _send(owner, other, django_capture_on_commit_callbacks)
    assert rung.call_count == 2


@pytest.mark.services
def test_a_failed_publish_lowers_the_flag(owner, account, flags, rung,
                                          django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    rung.side_effect = OperationalError("Connection refused")
    _send(owner, account, django_capture_on_commit_callbacks)
    assert not wakeups.flag_raised(account.pk)  # the next send tries again
    rung.side_effect = None
    _send(owner, account, django_capture_on_commit_callbacks)
    assert rung.call_count == 2 and wakeups.flag_raised(account.pk)


@pytest.mark.services
def test_a_drain_that_runs_out_of_time_rings_for_the_rest(owner, account, server, flags, rung,
                                                          settings,
                                                          django_capture_on_commit_callbacks):
    message = _send(owner, account, django_capture_on_commit_callbacks)
    settings.MAILROOM_DRAIN_SECONDS = 0
    assert delivery.drain(message.pk) == []
    assert rung.call_count == 2 and wakeups.flag_raised(account.pk)


def test_without_redis_every_send_rings(owner, account, settings, rung,
                                        django_capture_on_commit_callbacks):
    settings.MAILROOM_REDIS_URL = ""  # the embedded default
    for _ in range(3):
        _send(owner, account, django_capture_on_commit_callbacks)
    assert rung.call_count == 3 and not wakeups.flag_raised(account.pk)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)  # the worker thread has its own connection
def test_mail_sent_while_the_worker_gathers_joins_its_batch(owner, account, server, flags, rung,
                                                            settings,
                                                            django_capture_on_commit_callbacks):
    settings.MAILROOM_DRAIN_GATHER_SECONDS = 1.0
    first = _send(owner, account, django_capture_on_commit_callbacks, subject="first")
    outcomes = []
    # The worker's side in a thread of its own, the way a woken worker starts.
    def work():
        try:
            outcomes.extend(delivery.drain(first.pk))
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    for n in range(3):  # sent during the gathering second: the flag is still raised
        _send(owner, account, django_capture_on_commit_callbacks, subject=f"later {n}")
    worker.join(timeout=30)

    assert rung.call_count == 1  # one wake-up for four messages
    assert outcomes == ["sent"] * 4 and len(server.received) == 4
    assert not wakeups.flag_raised(account.pk)


def test_a_wake_up_without_the_flag_does_not_wait(owner, account, server, settings,
                                                   django_capture_on_commit_callbacks):
    # The sweeper's wake-ups, and every send's without Redis, have nothing gathering
    # behind them: a drain that waited would only slow a backlog down.
    settings.MAILROOM_REDIS_URL = ""
    settings.MAILROOM_DRAIN_GATHER_SECONDS = 30
    message = _send(owner, account, django_capture_on_commit_callbacks)
    started = time.monotonic()
    assert delivery.drain(message.pk) == ["sent"]
    assert time.monotonic() - started < 10
