"""The end-of-data mark is a durable commit: PostgreSQL crashing (``pg_ctl stop -m
immediate``, with the delivering worker killed at the same instant) while the server holds
the data and has not answered yet finds the mark after crash recovery, and the message is
``unknown`` — received once, never resent. ``tests/pg_crash.py`` runs the scenario on a
throwaway PostgreSQL cluster of its own (the shared one on 5432 is never stopped) with
real delivery code in child processes and an aiosmtpd server that crashes the database from
its DATA handler, before it replies."""

import pytest

from tests import pg_crash
from tests.conftest import require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _private_postgres_possible():
    missing = pg_crash.available()
    require_service(missing is None, missing or "")


def test_a_message_cut_by_the_crash_after_its_mark_is_unknown_not_resent():
    outcome = pg_crash.run(messages=1)

    [message] = outcome.messages
    assert message["message_id"] == outcome.crashed
    assert message["status"] == "unknown" and "check before resending" in message["last_error"]
    assert message["attempts"] == [{"outcome": "unknown", "marked": True}]
    assert outcome.times_received(message) == 1


def test_in_a_batch_only_the_message_in_the_window_is_unknown():
    # One drain claims all four; the crash strikes while the server holds the second's data.
    outcome = pg_crash.run(messages=4, crash_at=2)

    first, second, *rest = outcome.messages
    assert first["status"] == "sent" and first["attempts"] == [{"outcome": "sent", "marked": True}]
    assert second["message_id"] == outcome.crashed and second["status"] == "unknown"
    assert second["attempts"] == [{"outcome": "unknown", "marked": True}]
    for later in rest:
        # Claimed, never marked: given back by the sweeper and sent once after recovery.
        assert later["status"] == "sent"
        assert later["attempts"] == [{"outcome": "lease_expired", "marked": False},
                                     {"outcome": "sent", "marked": True}]
    assert [outcome.times_received(m) for m in outcome.messages] == [1, 1, 1, 1]


def test_the_mark_is_flushed_even_where_the_server_is_set_to_asynchronous_commits():
    # An operator's synchronous_commit = off (server, database or role) weakens every other
    # commit, not the mark: it insists on the flush for its own transaction.
    outcome = pg_crash.run(messages=1, server_settings={"synchronous_commit": "off"})

    [message] = outcome.messages
    assert message["status"] == "unknown"
    assert message["attempts"] == [{"outcome": "unknown", "marked": True}]
    assert outcome.times_received(message) == 1


def test_a_mark_committed_without_flushing_is_lost_and_the_message_goes_out_twice():
    # The negative, so that the test above is known to see the difference: the same window
    # with the mark committed as it was before issue 12 (synchronous_commit = off). The
    # claim was durable, the mark was not: after recovery the attempt has no mark, the
    # sweeper retries it as safe, and the server gets the message a second time.
    outcome = pg_crash.run(messages=1, async_mark=True)

    [message] = outcome.messages
    assert message["attempts"][0] == {"outcome": "lease_expired", "marked": False}
    assert message["status"] == "sent" and outcome.times_received(message) == 2
