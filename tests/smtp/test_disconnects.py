"""A connection lost before the end of the data is a plain transient failure; lost after the
end of the data (before the server's reply) the outcome is unknown — a different error."""

from __future__ import annotations

import io
import time

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


def test_a_message_in_one_write_is_marked_while_the_server_answers_the_envelope(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs(), transcript=True)
    seen: list[int] = []
    client.end_of_data_hook = lambda: seen.append(len(client.transcript))
    with client:
        client.send("a@example.org", ["b@example.org"], MSG)
    # At the hook the pipelined envelope had gone out, none of its replies had been read and
    # no byte of the data had been written: the mark's commit overlaps the round trip.
    assert len(seen) == 1
    before_hook = client.transcript[: seen[0]]
    assert before_hook[-1] == "C: DATA"
    assert not any(line.startswith("S: ") for line in before_hook[-3:])
    assert client.transcript.index("C: .") > seen[0]
    assert smtp_server.handler.messages[-1].content == MSG


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_longer_message_is_marked_right_before_its_end(smtp_server_factory, pipelining):
    server = smtp_server_factory(pipelining=pipelining)
    long_message = MSG + (b"y" * 998 + b"\r\n") * 300  # more than one write (256 KiB)
    short = MSG if not pipelining else None
    client = SMTPClient(**server.client_kwargs(), transcript=True)
    seen: list[int] = []
    client.end_of_data_hook = lambda: seen.append(len(client.transcript))
    with client:
        for message in filter(None, (long_message, short)):
            seen.clear()
            client.send("a@example.org", ["b@example.org"], message)
            # At the hook the transcript had everything up to the data's end, but not the
            # server's reply to it.
            assert len(seen) == 1
            before_hook = client.transcript[: seen[0]]
            assert before_hook[-1] == "C: ."
            assert client.transcript[seen[0]].startswith("S: 250 2.0.0")
            assert server.handler.messages[-1].content == message


def test_a_refused_envelope_after_the_early_mark_sends_no_data(smtp_server):
    smtp_server.handler.reply_at("rcpt", "550 5.1.1 No such user")
    client = SMTPClient(**smtp_server.client_kwargs(), transcript=True)
    ends: list[str] = []
    client.end_of_data_hook = lambda: ends.append("end")
    with client:
        with pytest.raises(errors.SMTPRecipientsRefused):
            client.send("a@example.org", ["b@example.org"], MSG)
        assert client.is_connected  # reset, usable
    assert ends == ["end"]  # marked during the envelope: "unknown" on a crash, the safe side
    assert smtp_server.handler.messages == []


def test_a_hook_that_raises_during_the_envelope_stops_the_message(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs())

    def refuse():
        raise RuntimeError("lease lost")

    client.end_of_data_hook = refuse
    client.connect()
    with pytest.raises(RuntimeError):
        client.send("a@example.org", ["b@example.org"], MSG)
    assert not client.is_connected  # mid-transaction: closed, never reused
    time.sleep(0.3)
    assert smtp_server.handler.messages == []
