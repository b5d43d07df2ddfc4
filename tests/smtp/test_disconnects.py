"""A connection lost before the end of the data is a plain transient failure; lost after the
end of the data (before the server's reply) the outcome is unknown — a different error."""

from __future__ import annotations

import io

import pytest

from mailer.smtp import SMTPClient, errors
from tests.smtp_servers import MiniSMTP

MSG = b"Subject: t\r\n\r\nHello.\r\n"
# Several MB: the server's receive buffer cannot swallow it, so the client's writes fail.
BIG = MSG + (b"x" * 998 + b"\r\n") * 8000


def drop_mid_data(conn):
    """Answer up to 354, read a little of the message, then reset the connection."""
    conn.reply("220 drop.test ESMTP")
    while True:
        line = conn.readline()
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.reply("250-drop.test", "250 8BITMIME")
        elif verb in (b"MAIL", b"RCPT"):
            conn.reply("250 Ok")
        elif verb == b"DATA":
            conn.reply("354 Go ahead")
            conn.read_exact(10_000)
            conn.close(reset=True)
            return
        else:
            return


def test_it_reports_a_drop_in_the_middle_of_the_data_as_disconnected(scripted_server_factory):
    server = scripted_server_factory(drop_mid_data)
    ends: list[str] = []
    client = SMTPClient(server.host, server.port, security="none", command_timeout=5)
    client.end_of_data_hook = lambda: ends.append("end")
    client.connect()
    with pytest.raises(errors.SMTPServerDisconnected) as caught:
        client.send("a@example.org", ["b@example.org"], io.BytesIO(BIG))
    assert caught.value.transient and caught.value.phase == "data"
    assert isinstance(caught.value, ConnectionError)
    assert not isinstance(caught.value, errors.SMTPOutcomeUnknown)
    assert ends == []  # the end of the data never went out
    assert not client.is_connected


@pytest.mark.parametrize("pipelining", [True, False])
def test_it_reports_a_drop_after_the_end_of_data_as_outcome_unknown(
    smtp_server_factory, pipelining
):
    server = smtp_server_factory(pipelining=pipelining)
    server.handler.close_at("after-data")
    events: list[str] = []
    client = SMTPClient(**server.client_kwargs(), transcript=True)
    client.end_of_data_hook = lambda: events.append("end of data")
    client.connect()
    with pytest.raises(errors.SMTPOutcomeUnknown) as caught:
        client.send("a@example.org", ["b@example.org"], MSG)
    error = caught.value
    assert not error.transient and not errors.is_transient(error)
    assert error.phase == "after-data"
    assert "may or may not have accepted" in str(error)
    assert events == ["end of data"]
    assert not client.is_connected
    # The server did get the whole message: exactly why it must not be resent blindly.
    assert server.handler.refused[0].content == MSG


def test_it_reports_silence_after_the_end_of_data_as_outcome_unknown(scripted_server_factory):
    session = MiniSMTP(extensions=("PIPELINING",), after_data=None)
    server = scripted_server_factory(session)
    client = SMTPClient(
        server.host, server.port, security="none", command_timeout=0.5, data_timeout=0.5
    )
    client.connect()
    with pytest.raises(errors.SMTPOutcomeUnknown) as caught:
        client.send("a@example.org", ["b@example.org"], MSG)
    assert isinstance(caught.value.__cause__, errors.SMTPTimeoutError)
    assert not client.is_connected
    assert session.messages[0].content == MSG


def test_it_calls_the_end_of_data_hook_right_before_the_end(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs(), transcript=True)
    seen: list[int] = []
    client.end_of_data_hook = lambda: seen.append(len(client.transcript))
    with client:
        client.send("a@example.org", ["b@example.org"], MSG)
    # At the hook the transcript had everything up to the data, but not the server's reply.
    before_hook = client.transcript[: seen[0]]
    assert before_hook[-1] == "C: ."
    assert client.transcript[seen[0]].startswith("S: 250 2.0.0")
