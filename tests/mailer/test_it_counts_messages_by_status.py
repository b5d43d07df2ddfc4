"""The tab counters (``mailer.counts``): database triggers keep a row per change, so the
sums equal a fresh GROUP BY of the outbox after every way a message can change — services,
delivery (its raw SQL included), bulk_create, queryset updates, cascades — and compaction
folds the rows without changing a sum.

Marked ``pipeline`` so that it runs in both passes: on SQLite, and again on PostgreSQL,
whose triggers are different code (statement-level with transition tables). The tests
that need two PostgreSQL sessions at once are marked ``services``."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.db.models import Count, Sum

from mailer import counts, delivery, services, tasks
from mailer.models import OutboxMessage, StatusCount
from tests.conftest import require_service
from tests.mailer.base import make_account, make_user, send

pytestmark = pytest.mark.pipeline
KEY = ("owner_id", "account_id", "status")


def _fresh(owner_ids) -> dict[tuple, int]:
    rows = (OutboxMessage.objects.filter(owner_id__in=owner_ids).order_by()
            .values_list(*KEY).annotate(n=Count("*")))
    return {(o, a, s): n for o, a, s, n in rows}


def _kept(owner_ids) -> dict[tuple, int]:
    rows = (StatusCount.objects.filter(owner_id__in=owner_ids).order_by()
            .values_list(*KEY).annotate(n=Sum("n")))
    return {(o, a, s): n for o, a, s, n in rows if n}


def assert_exact(*owners) -> None:
    """Every (owner, account, status) sum equals a fresh count, and so do the readers."""
    ids = [o.pk for o in owners]
    assert _kept(ids) == _fresh(ids)
    for owner in owners:
        mine = OutboxMessage.objects.filter(owner=owner).order_by()
        assert counts.by_status(owner) == dict(mine.values_list("status").annotate(n=Count("*")))
        for account_id in set(mine.values_list("account_id", flat=True)) - {None}:
            assert counts.by_status(owner, account_id) == dict(
                mine.filter(account_id=account_id).values_list("status").annotate(n=Count("*")))


def _bulk(owner, account, n: int, status: str) -> list[OutboxMessage]:
    return OutboxMessage.objects.bulk_create([
        OutboxMessage(owner=owner, account=account, status=status, eml="outbox/x.eml",
                      envelope_from="o@example.com", message_id=f"<b{i}@x>", subject=f"B{i}")
        for i in range(n)
    ])


def test_it_counts_every_way_a_message_changes(owner, stranger, account, server):
    other = make_account(owner, server, label="Other")
    theirs = make_account(stranger, server, label="Theirs")
    assert_exact(owner, stranger)

    sent = send(owner, account)  # queued
    held = send(owner, account, hold_seconds=60)  # scheduled
    later = send(owner, other, hold_seconds=60)
    send(stranger, theirs)
    assert_exact(owner, stranger)

    assert delivery.deliver(sent.pk) == "sent"  # claim (a conditional UPDATE) and record
    server.script.data = ["550 5.7.1 Refused for policy reasons"]
    refused = send(owner, account)
    assert delivery.deliver(refused.pk) == "failed"
    assert_exact(owner, stranger)

    services.retry_now(owner, refused)  # failed -> queued
    services.undo_send(owner, held)  # scheduled -> cancelled, then deleted
    services.cancel(owner, later)  # scheduled -> cancelled
    assert_exact(owner, stranger)

    claimed = delivery.claim_batch(account.pk, limit=5, worker="counting")  # raw SQL
    assert [m.pk for m, _a, _r in claimed] == [refused.pk]
    assert_exact(owner, stranger)

    _bulk(owner, other, 7, "sent")
    OutboxMessage.objects.filter(owner=owner, status="sent").update(status="unknown")
    one = OutboxMessage.objects.get(pk=sent.pk)
    one.status = "deferred"
    one.save()  # every column written; only the status moved
    OutboxMessage.objects.filter(pk=sent.pk).update(subject="Not a counted column")
    assert_exact(owner, stranger)

    other.delete()  # its messages stay, with no account (SET_NULL)
    assert OutboxMessage.objects.filter(owner=owner, account=None).count() == 8
    assert_exact(owner, stranger)

    stranger_id = stranger.pk
    stranger.delete()  # cascades to their account and messages
    assert _kept([stranger_id]) == {}
    assert_exact(owner)
    OutboxMessage.objects.filter(owner=owner).delete()
    assert_exact(owner)
    assert counts.by_status(owner) == {}


def test_it_counts_one_account(owner, account, server):
    other = make_account(owner, server, label="Other")
    _bulk(owner, account, 3, "sent")
    _bulk(owner, other, 2, "failed")
    _bulk(owner, other, 1, "sent")
    assert counts.by_status(owner) == {"sent": 4, "failed": 2}
    assert counts.by_status(owner, account) == {"sent": 3}
    assert counts.by_status(owner, other.pk) == {"sent": 1, "failed": 2}


def test_compaction_keeps_the_sums_and_folds_the_rows(owner, stranger, account, server):
    theirs = make_account(stranger, server, label="Theirs")
    for status in ("sent", "failed", "queued"):
        for _ in range(3):
            _bulk(owner, account, 2, status)  # three rows per key
    _bulk(stranger, theirs, 4, "deferred")
    OutboxMessage.objects.filter(owner=owner, status="queued").update(status="cancelled")
    OutboxMessage.objects.filter(owner=owner, status="cancelled").delete()  # sums to 0
    ids = [owner.pk, stranger.pk]
    before = StatusCount.objects.filter(owner_id__in=ids).count()
    sums = _kept(ids)

    folded = counts.compact()
    after = StatusCount.objects.filter(owner_id__in=ids).count()
    assert _kept(ids) == sums
    assert_exact(owner, stranger)
    assert after == len(sums) == 3  # one row per key; none for the key that sums to 0
    assert folded == before - after
    assert counts.compact() == 0  # nothing left to fold

    _bulk(owner, account, 1, "sent")
    assert counts.compact() == 1  # two rows for "sent" become one
    assert_exact(owner, stranger)


def test_the_beat_task_compacts(owner, account):
    _bulk(owner, account, 1, "sent")
    _bulk(owner, account, 1, "sent")
    assert tasks.compact_counts() >= 1
    assert StatusCount.objects.filter(owner=owner).count() == 1


def test_the_migration_counts_the_messages_that_exist(owner, stranger, account, server):
    theirs = make_account(stranger, server, label="Theirs")
    counts.uninstall(connection)  # as before migration 0006
    _bulk(owner, account, 3, "sent")
    _bulk(stranger, theirs, 2, "failed")
    OutboxMessage.objects.filter(owner=owner).update(account=None)
    assert _kept([owner.pk, stranger.pk]) == {}  # nothing counted without the triggers
    counts.install(connection)
    assert_exact(owner, stranger)
    _bulk(owner, account, 1, "queued")  # and the triggers are back
    assert_exact(owner, stranger)


def test_a_migration_that_drops_the_triggers_gets_them_back(owner, account):
    if connection.vendor != "sqlite":
        # Only SQLite copies a table (dropping its triggers) to alter it: nothing to repair.
        assert counts.repair(connection) is False
        return
    _bulk(owner, account, 2, "sent")
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER mailer_statuscount_au")
    OutboxMessage.objects.filter(owner=owner).update(status="failed")  # missed
    assert counts.repair(connection) is True
    assert_exact(owner)
    assert counts.repair(connection) is False  # intact now
    OutboxMessage.objects.filter(owner=owner).update(status="sent")
    assert_exact(owner)


# --- PostgreSQL: several sessions at once --------------------------------------------


def _in_thread(target, *args):
    """Run ``target`` in a thread with its own database connection; returns the thread
    and a list that receives its exception, if any."""
    errors: list[BaseException] = []

    def run():
        try:
            target(*args)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_writes_during_compaction_are_not_lost():
    require_service(connection.vendor == "postgresql", "PostgreSQL (concurrent sessions)")
    owners = [make_user(f"writer{i}") for i in range(3)]
    accounts = [make_account(o, label="A") for o in owners]
    done = threading.Event()
    folded: list[int] = []

    def writer(owner, account):
        for i in range(40):
            with transaction.atomic():  # open while compactions run
                [m] = _bulk(owner, account, 1, "queued")
                time.sleep(0.002)
                OutboxMessage.objects.filter(pk=m.pk).update(status="sending")
            OutboxMessage.objects.filter(pk=m.pk).update(status="sent" if i % 3 else "failed")

    def compactor():
        while not done.is_set():
            folded.append(counts.compact())

    writers = [_in_thread(writer, o, a) for o, a in zip(owners, accounts, strict=True)]
    compacting, compactor_errors = _in_thread(compactor)
    for thread, _errors in writers:
        thread.join(60)
    done.set()
    compacting.join(60)
    assert [e for _t, errors in writers for e in errors] + compactor_errors == []
    assert len(folded) > 3 and sum(folded) > 0  # it really ran meanwhile
    assert_exact(*owners)
    counts.compact()
    assert_exact(*owners)
    assert StatusCount.objects.filter(owner__in=owners).count() == 6  # sent + failed each


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_opposite_moves_do_not_wait_for_each_other(owner):
    """Two transactions moving messages between the same two statuses, in opposite
    directions: with one counter row per key each would wait for the other's row (and
    deadlock with a second message each); appended rows never lock anything."""
    require_service(connection.vendor == "postgresql", "PostgreSQL (concurrent sessions)")
    account = make_account(owner)
    [queued] = _bulk(owner, account, 1, "queued")
    [sent] = _bulk(owner, account, 1, "sent")
    moved, release = threading.Event(), threading.Event()

    def hold_a_move():
        with transaction.atomic():
            OutboxMessage.objects.filter(pk=queued.pk).update(status="sent")
            moved.set()
            release.wait(30)

    thread, errors = _in_thread(hold_a_move)
    try:
        assert moved.wait(30)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")  # fails instead of waiting
            OutboxMessage.objects.filter(pk=sent.pk).update(status="queued")
            assert counts.compact() >= 0  # nor does a compaction
    finally:
        release.set()
        thread.join(30)
    assert errors == []
    assert_exact(owner)
    assert counts.by_status(owner) == {"sent": 1, "queued": 1}


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_second_compaction_at_once_steps_aside(owner):
    require_service(connection.vendor == "postgresql", "PostgreSQL (advisory locks)")
    account = make_account(owner)
    _bulk(owner, account, 1, "sent")
    _bulk(owner, account, 1, "sent")
    locked, release = threading.Event(), threading.Event()

    def busy_compaction():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [counts._PG_LOCK])
            locked.set()
            release.wait(30)

    thread, errors = _in_thread(busy_compaction)
    try:
        assert locked.wait(30)
        assert counts.compact() == 0  # returns at once
    finally:
        release.set()
        thread.join(30)
    assert errors == []
    assert counts.compact() == 1
    assert_exact(owner)
