"""Per-account sending quotas (mailer.quotas), on both stores: the database (SQLite here,
PostgreSQL in the services pass) and Redis. The windows slide; a refusal says when."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections

from mailer import quotas
from mailer.models import QuotaUsage, SmtpAccount
from tests.conftest import TEST_REDIS_URL, redis_answers, require_service

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
REDIS_URL = TEST_REDIS_URL


def make_account(django_user_model, **quota) -> SmtpAccount:
    owner = django_user_model.objects.create_user(f"u{uuid.uuid4().hex[:8]}")
    return SmtpAccount.objects.create(
        owner=owner, label="Quota", from_address="q@example.com", host="127.0.0.1", port=25,
        **quota,
    )


@pytest.fixture
def database_store(settings):
    settings.MAILROOM_REDIS_URL = ""
    return "database"


@pytest.fixture
def redis_store(settings):
    require_service(redis_answers(), f"Redis at {REDIS_URL}")
    settings.MAILROOM_REDIS_URL = REDIS_URL
    # Test runs share this Redis and their account ids overlap: a prefix of our own.
    settings.MAILROOM_REDIS_PREFIX = f"mailroom-test-{uuid.uuid4().hex}"
    yield "redis"
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{settings.MAILROOM_REDIS_PREFIX}:*"):
        client.delete(key)


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.services)])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


def take(account, n, now):
    return [quotas.reserve(account, now=now) for _ in range(n)]


@pytest.mark.django_db
def test_it_allows_up_to_the_quota_then_says_when(store, django_user_model):
    account = make_account(django_user_model, quota_per_minute=5)
    assert take(account, 5, T0) == [None] * 5
    # the sixth waits until the first send leaves the one-minute window
    assert quotas.reserve(account, now=T0 + timedelta(seconds=10)) == T0 + timedelta(minutes=1)
    assert quotas.reserve(account, now=T0 + timedelta(seconds=59)) == T0 + timedelta(minutes=1)
    assert quotas.reserve(account, now=T0 + timedelta(seconds=60)) is None
    # the five sent at T0 have left the window; only the one just counted is in it
    assert [u for _, u, _ in quotas.usage(account, now=T0 + timedelta(seconds=60))] == [1]


@pytest.mark.django_db
def test_a_refusal_is_not_counted(store, django_user_model):
    account = make_account(django_user_model, quota_per_minute=2)
    take(account, 2, T0)
    refusals = take(account, 10, T0 + timedelta(seconds=1))
    assert refusals == [T0 + timedelta(minutes=1)] * 10
    assert quotas.usage(account, now=T0 + timedelta(seconds=1)) == [(timedelta(minutes=1), 2, 2)]


@pytest.mark.django_db
def test_the_window_slides(store, django_user_model):
    # 3 a minute, sent at 0 s, 20 s and 40 s: a fixed window would allow 3 more at 60 s;
    # the sliding one frees one slot at 60 s, the next at 80 s, the next at 100 s.
    account = make_account(django_user_model, quota_per_minute=3)
    for s in (0, 20, 40):
        assert quotas.reserve(account, now=T0 + timedelta(seconds=s)) is None
    at60 = T0 + timedelta(seconds=60)
    assert quotas.reserve(account, now=at60) is None
    assert quotas.reserve(account, now=at60) == T0 + timedelta(seconds=80)


@pytest.mark.django_db
def test_the_tightest_window_decides(store, django_user_model):
    account = make_account(django_user_model, quota_per_minute=10, quota_per_hour=4,
                           quota_per_day=100)
    for m in range(4):
        assert quotas.reserve(account, now=T0 + timedelta(minutes=m)) is None
    # the minute has room, the hour does not: wait for the first send to leave the hour
    assert quotas.reserve(account, now=T0 + timedelta(minutes=5)) == T0 + timedelta(hours=1)
    assert quotas.reserve(account, now=T0 + timedelta(hours=1)) is None


@pytest.mark.django_db
def test_a_day_quota_counts_the_last_24_hours(store, django_user_model):
    account = make_account(django_user_model, quota_per_day=2)
    late = T0.replace(hour=23, minute=59)
    assert take(account, 2, late) == [None, None]
    # a calendar day would start again at midnight; providers do not
    assert quotas.reserve(account, now=late + timedelta(minutes=2)) == late + timedelta(days=1)


@pytest.mark.django_db
def test_accounts_do_not_share_quotas(store, django_user_model):
    a = make_account(django_user_model, quota_per_minute=1)
    b = make_account(django_user_model, quota_per_minute=1)
    assert quotas.reserve(a, now=T0) is None
    assert quotas.reserve(b, now=T0) is None
    assert quotas.reserve(a, now=T0) is not None


@pytest.mark.django_db
def test_an_account_without_quotas_is_never_counted(store, django_user_model):
    account = make_account(django_user_model, quota_per_minute=None, quota_per_day=0)
    assert take(account, 50, T0) == [None] * 50
    assert quotas.usage(account) == []
    assert not QuotaUsage.objects.exists()


@pytest.mark.django_db
def test_the_database_log_forgets_what_is_older_than_a_day(database_store, django_user_model):
    account = make_account(django_user_model, quota_per_minute=100)
    take(account, 3, T0)
    assert QuotaUsage.objects.filter(account=account).count() == 3
    quotas.reserve(account, now=T0 + timedelta(days=1, seconds=1))
    assert QuotaUsage.objects.filter(account=account).count() == 1


@pytest.mark.django_db
def test_redis_being_down_defers_rather_than_oversends(settings, django_user_model):
    # A closed port on loopback: nothing answers there.
    from tests.ports import free_port

    settings.MAILROOM_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    account = make_account(django_user_model, quota_per_minute=5)
    assert quotas.reserve(account, now=T0) == T0 + timedelta(seconds=60)
    assert quotas.usage(account, now=T0) == []  # a page showing usage still renders


# --- concurrency: exactly N pass per window, whoever asks ---------------------------------


def _race_threads(account_id: int, threads: int, each: int, now: datetime) -> list:
    results, barrier = [], threading.Barrier(threads)
    lock = threading.Lock()

    def worker():
        account = SmtpAccount.objects.get(pk=account_id)
        barrier.wait()
        try:
            got = [quotas.reserve(account, now=now) for _ in range(each)]
        finally:
            connections.close_all()
        with lock:
            results.extend(got)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    return results


# Marked "pipeline" so that it also runs in the services pass, on PostgreSQL, where the row
# lock (not SQLite's single writer) is what makes it hold.
@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
def test_threads_racing_on_the_database_get_exactly_the_quota(database_store, django_user_model):
    account = make_account(django_user_model, quota_per_minute=5, quota_per_hour=50)
    results = _race_threads(account.pk, threads=6, each=4, now=T0)
    assert len(results) == 24
    assert results.count(None) == 5
    assert set(results) - {None} == {T0 + timedelta(minutes=1)}
    assert QuotaUsage.objects.filter(account=account).count() == 5


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_threads_racing_on_redis_get_exactly_the_quota(redis_store, django_user_model):
    account = make_account(django_user_model, quota_per_minute=5)
    results = _race_threads(account.pk, threads=6, each=4, now=T0)
    assert results.count(None) == 5 and len(results) == 24


def _reserve_in_process(account_id: int, each: int, now: datetime, out) -> None:
    # A separate process, as a worker on another machine would be: its own connections.
    connections.close_all()
    account = SmtpAccount.objects.get(pk=account_id)
    out.put([quotas.reserve(account, now=now) for _ in range(each)])
    connections.close_all()


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("which", ["database", pytest.param("redis", marks=pytest.mark.services)])
def test_processes_racing_get_exactly_the_quota(which, request, django_user_model):
    request.getfixturevalue(f"{which}_store")
    account = make_account(django_user_model, quota_per_minute=7)
    connections.close_all()  # never hand an open connection to a forked child
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reserve_in_process, args=(account.pk, 5, T0, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    results = [r for _ in procs for r in out.get(timeout=60)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert results.count(None) == 7 and len(results) == 20
