"""A send really rings the bell: the wake-up reaches the broker (the sweeper is only the
safety net). An invalid publish option once made every wake-up fail silently into the
sweeper's slower path; this catches that."""

import logging

from mailer import tasks


def test_it_publishes_a_wake_up_without_falling_back(caplog):
    with caplog.at_level(logging.WARNING, logger="mailer.tasks"):
        tasks.publish(123456)
    assert not [r for r in caplog.records if "could not wake" in r.getMessage()]
