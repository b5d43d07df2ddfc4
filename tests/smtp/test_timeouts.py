"""Timeouts: per command, and a longer patience for the reply after the data."""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient, errors
from tests.smtp_servers import MiniSMTP

MSG = b"Subject: slow\r\n\r\nHello.\r\n"


@pytest.mark.parametrize("extensions", [("PIPELINING",), ("PIPELINING", "CHUNKING")])
def test_it_waits_for_a_slow_final_reply_within_the_data_timeout(
    scripted_server_factory, extensions
):
    session = MiniSMTP(extensions=extensions, after_data_delay=0.6)
    server = scripted_server_factory(session)
    client = SMTPClient(
        server.host, server.port, security="none", command_timeout=0.2, data_timeout=5
    )
    with client:
        assert client.send("a@example.org", ["b@example.org"], MSG).delivered
        assert client.noop()  # and commands are back on the short timeout


def test_it_gives_up_on_the_final_reply_after_the_data_timeout(scripted_server_factory):
    session = MiniSMTP(extensions=("PIPELINING",), after_data_delay=1)
    server = scripted_server_factory(session)
    client = SMTPClient(
        server.host, server.port, security="none", command_timeout=0.2, data_timeout=0.5
    )
    client.connect()
    with pytest.raises(errors.SMTPOutcomeUnknown) as caught:
        client.send("a@example.org", ["b@example.org"], MSG)
    assert isinstance(caught.value.__cause__, errors.SMTPTimeoutError)
    assert not client.is_connected


def test_it_times_out_over_tls_too(scripted_server_factory, tls_certificates):
    def silent_after_ehlo(conn):
        conn.reply("220 slow.test ESMTP")
        conn.readline()
        conn.readline()  # never answers EHLO

    server = scripted_server_factory(
        silent_after_ehlo, tls_context=tls_certificates.server_context()
    )
    client = SMTPClient(
        server.host,
        server.port,
        security="tls",
        cadata=tls_certificates.ca_pem,
        command_timeout=0.3,
    )
    with pytest.raises(errors.SMTPTimeoutError) as caught:
        client.connect()
    assert caught.value.phase == "ehlo" and not client.is_connected
