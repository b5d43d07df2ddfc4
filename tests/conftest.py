"""Shared fixtures. Service-dependent tests call ``require_service`` so that, under
``REQUIRE_SERVICES=1`` (CI), a missing Redis, PostgreSQL, browser or tool fails the test
instead of skipping it."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.smtp_servers"]


def require_service(available: bool, what: str) -> None:
    """Skip (locally) or fail (CI, REQUIRE_SERVICES=1) when ``what`` is not available."""
    if available:
        return
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")
