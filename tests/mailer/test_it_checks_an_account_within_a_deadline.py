"""A connection check has ONE deadline for connect, greeting, TLS and login
(MAILROOM_CHECK_DEADLINE_SECONDS): a server that accepts and never greets, or one that
keeps the conversation alive a line at a time, gets a plain-words verdict when it passes,
not after the client's per-command timeouts add up."""

import time

from mailer import services
from tests.hostile_servers import HostileServer
from tests.mailer.base import make_account


def test_a_server_that_never_greets_is_given_up_at_the_deadline(owner, settings):
    settings.MAILROOM_CHECK_DEADLINE_SECONDS = 1.0
    settings.MAILROOM_SMTP_COMMAND_TIMEOUT = 60.0  # per command: the deadline must win
    with HostileServer("silent") as server:
        account = make_account(owner, port=server.port)
        started = time.monotonic()
        result = services.check_account(owner, account)
        took = time.monotonic() - started
    assert took < 3, took
    assert not result.ok
    assert f"127.0.0.1:{server.port} did not finish the greeting" in result.verdict
    assert "within 1 s" in result.verdict and "during the greeting step" in result.verdict
    assert "try again later" not in result.verdict  # a check retries nothing


def _greet_forever(conn):
    # Each line comes well within the command timeout, so only the overall deadline ends it.
    try:
        for _ in range(200):
            conn.reply("220-still greeting")
            time.sleep(0.2)
    except OSError:
        pass  # the client hung up


def test_a_server_that_dribbles_is_cut_off_at_the_deadline(
    owner, settings, scripted_server_factory
):
    settings.MAILROOM_CHECK_DEADLINE_SECONDS = 1.5
    settings.MAILROOM_SMTP_COMMAND_TIMEOUT = 1.0
    server = scripted_server_factory(_greet_forever)
    account = make_account(owner, server)
    started = time.monotonic()
    result = services.check_account(owner, account, deadline=1.5)
    took = time.monotonic() - started
    assert took < 3.5, took
    assert not result.ok
    assert "did not finish the greeting, encryption and login within" in result.verdict


def test_a_refused_connection_gets_its_own_words_at_once(owner, settings):
    settings.MAILROOM_CHECK_DEADLINE_SECONDS = 30.0
    with HostileServer("refuse") as server:
        account = make_account(owner, port=server.port)
        started = time.monotonic()
        result = services.check_account(owner, account)
    assert time.monotonic() - started < 3
    assert not result.ok and "connection failed" in result.verdict.lower()
    assert "Could not connect" in result.error
