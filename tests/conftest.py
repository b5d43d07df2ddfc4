"""Shared fixtures. Service-dependent tests call ``require_service`` so that, under
``REQUIRE_SERVICES=1`` (CI), a missing Redis, PostgreSQL, browser or tool fails the test
instead of skipping it."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.smtp_servers", "tests.oauth", "tests.imap_server", "tests.postfix_server"]

#: Redis for Mailroom's own keys (quotas, wake-up flags) in tests.
TEST_REDIS_URL = os.environ.get("MAILROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/10")


def redis_answers(url: str = TEST_REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def require_service(available: bool, what: str) -> None:
    """Skip (locally) or fail (CI, REQUIRE_SERVICES=1) when ``what`` is not available."""
    if available:
        return
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")
