"""One connection for many messages: NOOP tells a live connection from a dead one, RSET
works, QUIT is graceful even when the server has gone, a stale connection is noticed before
anything is sent into it."""

from __future__ import annotations

import time

import pytest

from mailer.smtp import SMTPClient, errors

MSG = b"Subject: r\r\n\r\nHello.\r\n"


def test_it_sends_many_messages_on_one_connection(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs()) as client:
        for i in range(20):
            assert client.send("a@example.org", [f"b{i}@example.org"], MSG).delivered
    assert len(smtp_server.messages) == 20


def test_it_answers_noop_while_alive_and_false_once_dead(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs())
    assert client.noop() is False  # not connected yet
    client.connect()
    assert client.noop() is True
    smtp_server.stop()
    time.sleep(0.1)
    assert client.noop() is False
    assert not client.is_connected
    client.quit()  # graceful even though the server is gone


def test_it_resets_on_request(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs(), transcript=True) as client:
        client.rset()
        assert client.transcript[-1].startswith("S: 250")


def test_it_refuses_to_send_when_not_connected(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs())
    with pytest.raises(errors.SMTPServerDisconnected) as caught:
        client.send("a@example.org", ["b@example.org"], MSG)
    assert "connect()" in str(caught.value)


def idle_timeout_session(conn):
    conn.reply("220 idle.test ESMTP")
    conn.readline()
    conn.reply("250-idle.test", "250 PIPELINING")
    conn.reply("421 4.4.2 Idle timeout, closing")
    conn.close()


def test_it_notices_a_connection_closed_while_idle_before_sending(scripted_server_factory):
    server = scripted_server_factory(idle_timeout_session)
    client = SMTPClient(server.host, server.port, security="none")
    client.connect()
    time.sleep(0.2)
    with pytest.raises(errors.SMTPServerDisconnected) as caught:
        client.send("a@example.org", ["b@example.org"], MSG)
    assert caught.value.transient
    assert caught.value.reply is not None and caught.value.reply.code == 421
    assert "Nothing was sent" in str(caught.value)
    assert server.connections[0].received.count(b"MAIL") == 0
    assert not client.is_connected


def test_it_reconnects_after_close(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs())
    client.connect()
    client.close()
    assert not client.is_connected
    client.connect()
    assert client.send("a@example.org", ["b@example.org"], MSG).delivered
    client.quit()
