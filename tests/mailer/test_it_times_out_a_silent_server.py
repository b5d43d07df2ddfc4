"""A server that greets and then never answers: the worker gives up after the configured
command timeout (MAILROOM_SMTP_COMMAND_TIMEOUT), defers the message and frees itself,
instead of hanging on the default minute."""

import time

from mailer import delivery
from tests.mailer.base import make_account, send


def _greet_then_say_nothing(conn):
    conn.reply("220 silent.test ESMTP")
    while conn.recv_some():  # swallow EHLO and anything else until the client hangs up
        pass


def test_it_defers_after_the_configured_command_timeout(owner, settings, scripted_server_factory):
    settings.MAILROOM_SMTP_COMMAND_TIMEOUT = 0.5
    server = scripted_server_factory(_greet_then_say_nothing)
    account = make_account(owner, server)
    msg = send(owner, account)

    started = time.monotonic()
    assert delivery.deliver(msg.pk) == "deferred"
    assert time.monotonic() - started < 10  # the default (60 s) would have been used otherwise

    msg.refresh_from_db()
    assert msg.status == "deferred"
    attempt = msg.delivery_attempts.get()
    assert attempt.error_class == "SMTPTimeoutError"
