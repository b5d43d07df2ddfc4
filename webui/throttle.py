"""Login throttling: a small fixed-window counter in Django's cache.

Why no library: django-axes would bring its own models, migrations, middleware and
authentication backend to guard one view. All we need is "too many failures for this user
name or this address → wait", which two cache counters do. The counters live in Django's
cache; with several web processes, point ``CACHES`` at a shared cache (Redis) so that they
add up across processes (with the per-process default each process counts on its own,
which still slows guessing down, just less).

The per-user-name lock is the real defence against guessing one password; its price is
that someone can lock a user name out for the window by failing on purpose — the page
says to wait, and the lock lifts by itself.
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache
from django.http import HttpRequest

from webui.views.common import increment

WINDOW_SECONDS = 15 * 60
MAX_FAILURES_PER_USERNAME = 5
# Generous: behind a reverse proxy REMOTE_ADDR may be the proxy, shared by every user.
MAX_FAILURES_PER_ADDRESS = 100


def _keys(request: HttpRequest, username: str) -> list[tuple[str, int]]:
    ip = request.META.get("REMOTE_ADDR", "")
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [
        (f"webui:login-fail:user:{name}", MAX_FAILURES_PER_USERNAME),
        (f"webui:login-fail:ip:{ip}", MAX_FAILURES_PER_ADDRESS),
    ]


def is_throttled(request: HttpRequest, username: str) -> bool:
    return any((cache.get(key) or 0) >= limit for key, limit in _keys(request, username))


def record_failure(request: HttpRequest, username: str) -> None:
    for key, _limit in _keys(request, username):
        increment(key, WINDOW_SECONDS)


def reset(request: HttpRequest, username: str) -> None:
    user_key, _ = _keys(request, username)[0]
    cache.delete(user_key)
