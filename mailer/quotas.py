"""Per-account sending quotas (per minute, per hour, per day) that hold across every worker
on every machine.

:func:`reserve` asks for one message: ``None`` means "allowed now, and counted"; a time
means "not before then" — the outbox defers the message to that time, never fails it.

The windows slide: a quota of 450 a day means at most 450 messages in any 24 hours, the
way providers count (a fixed calendar day would allow 900 around midnight and get the
account blocked). Each account keeps a log of its send times for the longest window;
a reservation counts the log in each window and adds to it only if every window has room,
all in one atomic step:

* **Redis** (``MAILROOM_REDIS_URL`` set): a sorted set per account, checked and updated by
  one Lua script, which Redis runs atomically.
* **The database** otherwise (:class:`mailer.models.QuotaUsage`): the account's row is
  locked (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises
  writers) while the log is counted and appended to.

All machines must agree on the time (NTP), as they must for ``next_attempt_at`` anyway.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from mailer import rediskeys

log = logging.getLogger("mailer.quotas")

__all__ = ["WINDOWS", "limits", "reserve", "usage"]

#: (account field, window length), shortest first.
WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("quota_per_minute", timedelta(minutes=1)),
    ("quota_per_hour", timedelta(hours=1)),
    ("quota_per_day", timedelta(days=1)),
)
_LONGEST = max(w for _, w in WINDOWS)
# When the quota store cannot be asked (Redis down), mail waits this long and asks again:
# sending past a provider's cap risks the account, waiting a minute costs little.
_STORE_DOWN_RETRY = timedelta(seconds=60)


def limits(account) -> list[tuple[timedelta, int]]:
    """The account's quotas as (window, limit), only those set (null or 0 = no quota)."""
    return [(window, n) for name, window in WINDOWS if (n := getattr(account, name, None))]


def reserve(account, now: datetime | None = None) -> datetime | None:
    """Count one message against ``account``'s quotas if every one allows it now and return
    None; otherwise count nothing and return the earliest time they all will."""
    rules = limits(account)
    if not rules:
        return None
    now = now or timezone.now()
    if _redis_url():
        try:
            return _RedisLog.reserve(account.pk, rules, now)
        except _redis_errors() as exc:
            log.warning("quota store (Redis) unavailable for account=%s: %s", account.pk, exc)
            return now + _STORE_DOWN_RETRY
    return _DatabaseLog.reserve(account.pk, rules, now)


def usage(account, now: datetime | None = None) -> list[tuple[timedelta, int, int]]:
    """(window, used, limit) for each quota set on the account, for pages and commands."""
    rules = limits(account)
    if not rules:
        return []
    now = now or timezone.now()
    if not _redis_url():
        return [(w, _DatabaseLog.count(account.pk, now - w), n) for w, n in rules]
    try:
        return [(w, _RedisLog.count(account.pk, now - w), n) for w, n in rules]
    except _redis_errors() as exc:
        # A page must not break because the counters are out of reach: show no usage.
        log.warning("quota store (Redis) unavailable for account=%s: %s", account.pk, exc)
        return []


def _redis_url() -> str:
    return rediskeys.url()


def _redis_errors() -> tuple[type[BaseException], ...]:
    return rediskeys.errors()


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


# --- Redis -------------------------------------------------------------------------------

# KEYS[1]: the account's log (member = unique id, score = send time in ms).
# ARGV: now_ms, member, longest_window_ms, then window_ms, limit pairs.
# Returns 0 (counted) or the time in ms when every window will have room.
_RESERVE_LUA = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local longest = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - longest)
local allowed_at = 0
for i = 4, #ARGV, 2 do
  local window = tonumber(ARGV[i])
  local limit = tonumber(ARGV[i + 1])
  local since = now - window
  local used = redis.call('ZCOUNT', key, '(' .. since, '+inf')
  if used >= limit then
    -- the (used - limit + 1)-th oldest send in the window must leave it first
    local e = redis.call('ZRANGEBYSCORE', key, '(' .. since, '+inf', 'WITHSCORES',
                         'LIMIT', used - limit, 1)
    local at = tonumber(e[2]) + window
    if at > allowed_at then allowed_at = at end
  end
end
if allowed_at > 0 then return allowed_at end
redis.call('ZADD', key, now, ARGV[2])
redis.call('PEXPIRE', key, longest)
return 0
"""


class _RedisLog:
    _scripts: dict[int, object] = {}  # id(client) -> the registered reserve script

    @classmethod
    def _client(cls):
        client = rediskeys.client()
        if id(client) not in cls._scripts:
            cls._scripts[id(client)] = client.register_script(_RESERVE_LUA)
        return client, cls._scripts[id(client)]

    @staticmethod
    def _key(account_id: int) -> str:
        return rediskeys.key("quota", account_id)

    @classmethod
    def reserve(cls, account_id: int, rules, now: datetime) -> datetime | None:
        args: list[int | str] = [_ms(now), uuid.uuid4().hex, int(_LONGEST.total_seconds() * 1000)]
        for window, limit in rules:
            args += [int(window.total_seconds() * 1000), limit]
        _, script = cls._client()
        at = int(script(keys=[cls._key(account_id)], args=args))
        return None if at == 0 else datetime.fromtimestamp(at / 1000, tz=UTC)

    @classmethod
    def count(cls, account_id: int, since: datetime) -> int:
        client, _ = cls._client()
        return int(client.zcount(cls._key(account_id), f"({_ms(since)}", "+inf"))


# --- the database ------------------------------------------------------------------------


class _DatabaseLog:
    @staticmethod
    def reserve(account_id: int, rules, now: datetime) -> datetime | None:
        from mailer.models import QuotaUsage, SmtpAccount

        with transaction.atomic():
            # The lock that makes check-then-add atomic across workers (PostgreSQL); on
            # SQLite the IMMEDIATE transaction already holds the database's write lock.
            if not SmtpAccount.objects.select_for_update().filter(pk=account_id).exists():
                return None  # the account is gone; the outbox fails its mail itself
            log_rows = QuotaUsage.objects.filter(account_id=account_id)
            log_rows.filter(sent_at__lte=now - _LONGEST).delete()
            allowed_at = None
            for window, limit in rules:
                in_window = log_rows.filter(sent_at__gt=now - window).order_by("sent_at")
                used = in_window.count()
                if used >= limit:
                    oldest = in_window.values_list("sent_at", flat=True)[used - limit]
                    at = oldest + window
                    allowed_at = at if allowed_at is None else max(allowed_at, at)
            if allowed_at is not None:
                return allowed_at
            QuotaUsage.objects.create(account_id=account_id, sent_at=now)
        return None

    @staticmethod
    def count(account_id: int, since: datetime) -> int:
        from mailer.models import QuotaUsage

        return QuotaUsage.objects.filter(account_id=account_id, sent_at__gt=since).count()
