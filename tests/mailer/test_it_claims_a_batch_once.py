"""Batch claims (``delivery.claim_batch``, what a woken worker drains its account with):
each message is claimed by one worker only, with its own attempt id, and a worker that
vanishes mid-batch leaves every message either retried safely or ``unknown`` only if its
own end of data was marked."""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from mailer import delivery
from mailer.delivery import attempt as attempt_module
from mailer.models import DeliveryAttempt, OutboxMessage
from tests.conftest import require_service
from tests.mailer.base import send


def test_two_batches_never_share_a_message(owner, account):
    msgs = [send(owner, account, subject=f"b{i}") for i in range(7)]
    first = delivery.claim_batch(account.pk, limit=4, worker="w1")
    second = delivery.claim_batch(account.pk, limit=4, worker="w2")
    assert delivery.claim_batch(account.pk, limit=4, worker="w3") == []

    ids1 = [m.pk for m, _, _ in first]
    ids2 = [m.pk for m, _, _ in second]
    assert ids1 == [m.pk for m in msgs[:4]] and ids2 == [m.pk for m in msgs[4:]]  # due order
    for worker, batch in (("w1", first), ("w2", second)):
        for message, attempt, pending in batch:
            row = OutboxMessage.objects.get(pk=message.pk)
            assert row.status == "sending" and row.claimed_by == worker and row.attempts == 1
            assert row.attempt_id == attempt.attempt_id and row.lease_until > row.last_attempt_at
            assert (
                DeliveryAttempt.objects.get(attempt_id=attempt.attempt_id).outcome == "in_progress"
            )
            assert [r.address for r in pending] == ["alice@example.org"]
    attempt_ids = {a.attempt_id for _, a, _ in first + second}
    assert len(attempt_ids) == 7


def test_a_batch_skips_mail_that_is_not_due_or_of_a_paused_account(owner, account):
    later = send(owner, account, send_at=timezone.now() + timedelta(hours=1))
    due = send(owner, account)
    assert [m.pk for m, _, _ in delivery.claim_batch(account.pk, limit=10)] == [due.pk]
    assert OutboxMessage.objects.get(pk=later.pk).status == "scheduled"

    waiting = send(owner, account)
    account.paused_at = timezone.now()
    account.save()
    assert delivery.claim_batch(account.pk, limit=10) == []
    assert OutboxMessage.objects.get(pk=waiting.pk).status == "queued"


def test_a_throttled_account_lets_one_probe_through(owner, account):
    for i in range(3):
        send(owner, account, subject=f"t{i}")
    account.throttled_until = timezone.now() - timedelta(seconds=1)  # just ran out
    account.save()
    assert len(delivery.claim_batch(account.pk, limit=10)) == 1
    assert delivery.claim_batch(account.pk, limit=10) == []  # the probe is still out


def test_draining_sends_the_accounts_mail_over_one_connection(owner, account, server):
    msgs = [send(owner, account, subject=f"d{i}") for i in range(12)]
    assert delivery.drain(msgs[5].pk) == ["sent"] * 12
    assert server.connections == 1
    assert sorted(server.per_message_id()) == sorted(m.message_id for m in msgs)
    assert set(server.per_message_id().values()) == {1}
    assert not DeliveryAttempt.objects.exclude(outcome="sent").exists()


def test_a_worker_gone_mid_batch_leaves_each_message_retried_or_unknown_by_its_own_mark(
    owner, account, server, settings
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msgs = [send(owner, account, subject=f"k{i}") for i in range(5)]
        batch = delivery.claim_batch(account.pk, limit=5, worker="doomed")
        # The doomed worker sends the first message, reaches the end of the data of the
        # second, and dies there; the last three were claimed but never started.
        first, second = batch[0], batch[1]
        assert delivery.deliver_claimed(*first) == "sent"
        attempt_module.mark_end_of_data(second[0].pk, second[1].attempt_id)
    with time_machine.travel(
        start + timedelta(seconds=settings.MAILROOM_LEASE_SECONDS + 1), tick=False
    ):
        woken = []
        report = delivery.sweep(enqueue=woken.append)
        assert report.unknown == 1 and report.reclaimed == 3
        assert sorted(woken) == sorted(m.pk for m in msgs[2:])
        assert delivery.drain(woken[0]) == ["sent"] * 3
    status = dict(OutboxMessage.objects.filter(account=account).values_list("pk", "status"))
    assert status == {msgs[0].pk: "sent", msgs[1].pk: "unknown", **{m.pk: "sent" for m in msgs[2:]}}
    counts = server.per_message_id()
    assert counts == {m.message_id: 1 for m in [msgs[0], *msgs[2:]]}
    for m in msgs[2:]:
        outcomes = list(DeliveryAttempt.objects.filter(message=m).order_by("pk")
                        .values_list("outcome", "end_of_data_at"))
        assert [o for o, _ in outcomes] == ["lease_expired", "sent"] and outcomes[0][1] is None


def test_a_batch_member_taken_over_while_it_waited_is_not_sent_by_the_slow_worker(
    owner, account, server, settings
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = send(owner, account)
        [slow] = delivery.claim_batch(account.pk, limit=5, worker="slow")
    with time_machine.travel(
        start + timedelta(seconds=settings.MAILROOM_LEASE_SECONDS + 1), tick=False
    ):
        delivery.sweep(enqueue=lambda pk: None)
        assert delivery.deliver(msg.pk) == "sent"  # another worker took it over
        assert delivery.deliver_claimed(*slow) == "lease_lost"
    assert server.per_message_id() == {msg.message_id: 1}


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_batch_claims_on_postgresql_never_double_claim(owner, account):
    require_service(connection.vendor == "postgresql", "PostgreSQL (row locks with SKIP LOCKED)")
    msgs = [send(owner, account, subject=f"c{i}") for i in range(120)]
    claimed: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def claimer(n: int) -> None:
        try:
            barrier.wait()
            while batch := delivery.claim_batch(account.pk, limit=7, worker=f"t{n}"):
                claimed[n].extend(m.pk for m, _, _ in batch)
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    everything = [pk for part in claimed for pk in part]
    assert sorted(everything) == sorted(m.pk for m in msgs)  # each once, none lost
    assert sum(1 for part in claimed if part) >= 2  # really concurrent
    rows = OutboxMessage.objects.filter(account=account)
    assert set(rows.values_list("status", flat=True)) == {"sending"}
    assert DeliveryAttempt.objects.filter(message__account=account).count() == 120
