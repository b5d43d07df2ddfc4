"""Garbage, endless, huge or missing replies end in a clear error and a closed connection,
never a hang or unbounded memory."""

from __future__ import annotations

import time

import pytest

from mailer.smtp import SMTPClient, errors


def greeting_then(*chunks: bytes, wait: bool = False):
    """A session that sends the given bytes after the client's first command."""

    def session(conn):
        conn.reply("220 hostile.test ESMTP")
        conn.readline()
        for chunk in chunks:
            conn.send(chunk)
        if wait:
            conn.readline()

    return session


def connect(server, **kwargs):
    client = SMTPClient(server.host, server.port, security="none", **kwargs)
    return client, client.connect


@pytest.mark.parametrize(
    "chunks",
    [
        [b"HTTP/1.1 400 Bad Request\r\n"],
        [b"250-mx\r\n", b"251 mixed codes\r\n"],
        [b"250-" + b"x" * 100_000 + b"\r\n"],
        [b"250-endless\r\n" * 5000],
        [b"\x00\xff\xfe garbage\r\n"],
    ],
    ids=["not-smtp", "mixed-codes", "huge-line", "endless", "binary"],
)
def test_it_refuses_hostile_replies_with_a_protocol_error(scripted_server_factory, chunks):
    server = scripted_server_factory(greeting_then(*chunks, wait=True))
    client, connect_ = connect(server, command_timeout=5)
    started = time.monotonic()
    with pytest.raises(errors.SMTPProtocolError) as caught:
        connect_()
    assert time.monotonic() - started < 4
    assert caught.value.transient and caught.value.phase == "ehlo"
    assert not client.is_connected


def test_it_times_out_on_a_silent_server_and_closes(scripted_server_factory):
    server = scripted_server_factory(greeting_then(wait=True))
    client, connect_ = connect(server, command_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(errors.SMTPTimeoutError) as caught:
        connect_()
    assert 0.25 < time.monotonic() - started < 3
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.transient and caught.value.phase == "ehlo"
    assert "did not answer in time" in str(caught.value)
    assert not client.is_connected


def test_it_times_out_on_a_server_that_never_greets(scripted_server_factory):
    server = scripted_server_factory(lambda conn: conn.readline())
    client, connect_ = connect(server, command_timeout=0.3)
    with pytest.raises(errors.SMTPTimeoutError) as caught:
        connect_()
    assert caught.value.phase == "greeting"


def test_it_reports_a_refused_greeting_by_its_code(scripted_server_factory):
    server = scripted_server_factory(lambda conn: conn.reply("554 5.7.1 Go away"))
    with pytest.raises(errors.SMTPGreetingError) as caught:
        SMTPClient(server.host, server.port, security="none").connect()
    assert not caught.value.transient and caught.value.reply.code == 554


def test_it_reports_a_closed_connection_at_greeting(scripted_server_factory):
    server = scripted_server_factory(lambda conn: conn.close())
    with pytest.raises(errors.SMTPServerDisconnected) as caught:
        SMTPClient(server.host, server.port, security="none").connect()
    assert caught.value.transient and caught.value.phase == "greeting"


def test_it_reports_a_refused_connection_as_transient():
    from tests.smtp_servers import free_port

    with pytest.raises(errors.SMTPConnectError) as caught:
        SMTPClient("127.0.0.1", free_port(), security="none").connect()
    assert caught.value.transient and isinstance(caught.value, ConnectionError)
    assert "Check the host and port" in str(caught.value)


def test_it_reports_an_unknown_host_name_as_transient():
    with pytest.raises(errors.SMTPConnectError) as caught:
        SMTPClient("no-such-host.invalid", 25, security="none").connect()
    assert caught.value.transient
    assert "Check the server name" in str(caught.value)
