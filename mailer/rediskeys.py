"""Mailroom's own keys in Redis (``MAILROOM_REDIS_URL``): the quota logs
(``mailer.quotas``) and the wake-up flags (``mailer.tasks``). One client, and so one
connection pool, per process and URL. With no URL set (the embedded default) there is no
client and each user of it has its own fallback."""

from __future__ import annotations

import threading

from django.conf import settings

_lock = threading.Lock()
_clients: dict[str, object] = {}


def url() -> str:
    return settings.MAILROOM_REDIS_URL or ""


def client():
    """The process's ``redis.Redis`` for ``MAILROOM_REDIS_URL``, or None when it is unset."""
    address = url()
    if not address:
        return None
    with _lock:
        if address not in _clients:
            import redis

            _clients[address] = redis.Redis.from_url(
                address, socket_timeout=5, socket_connect_timeout=5
            )
        return _clients[address]


def key(*parts: object) -> str:
    """``<MAILROOM_REDIS_PREFIX>:part:part``: several instances (or test runs) may share
    one Redis."""
    prefix = settings.MAILROOM_REDIS_PREFIX
    return ":".join([prefix, *map(str, parts)])


def errors() -> tuple[type[BaseException], ...]:
    """What a Redis that is down or unreachable raises."""
    import redis

    return (redis.RedisError, OSError)
