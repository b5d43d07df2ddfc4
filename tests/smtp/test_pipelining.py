"""PIPELINING (RFC 2920) is really used: the server counts how often the client had to wait
for it (reply flushes, i.e. round trips) and how many reads the commands took."""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient
from mailer.smtp.errors import SMTPDataError, SMTPServerDisconnected
from tests.smtp_servers import MiniSMTP

MSG = b"Subject: p\r\n\r\nHello.\r\n"
RCPTS = [f"r{i}@example.org" for i in range(5)]


def round_trips_for_one_message(scripted_server_factory, extensions):
    session = MiniSMTP(extensions=extensions)
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none") as client:
        before = session.round_trips
        result = client.send("a@example.org", RCPTS, MSG)
        trips = session.round_trips - before
    assert result.accepted == RCPTS and result.delivered
    assert session.messages[0].content == MSG
    return trips, server.connections[0]


def test_it_sends_mail_rcpts_and_data_in_one_round_trip(scripted_server_factory):
    trips, _ = round_trips_for_one_message(scripted_server_factory, ("PIPELINING",))
    # MAIL + 5 RCPT + DATA together, then the body: 2 round trips instead of 8.
    assert trips == 2


def test_it_sends_the_whole_message_in_one_round_trip_with_bdat(scripted_server_factory):
    trips, _ = round_trips_for_one_message(scripted_server_factory, ("PIPELINING", "CHUNKING"))
    assert trips == 1


def test_it_waits_for_each_reply_without_pipelining(scripted_server_factory):
    trips, _ = round_trips_for_one_message(scripted_server_factory, ())
    assert trips == 1 + len(RCPTS) + 1 + 1


def test_it_writes_the_envelope_as_one_write(scripted_server_factory):
    session = MiniSMTP(extensions=("PIPELINING",))
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none") as client:
        conn = server.connections[0]
        reads_before = conn.reads
        client.send("a@example.org", RCPTS, MSG)
        reads = conn.reads - reads_before
    # One read for MAIL+RCPTs+DATA, one for the body and its end (loopback delivers each
    # write whole).
    assert reads == 2


@pytest.mark.parametrize("extensions", [("PIPELINING",), ("PIPELINING", "CHUNKING")])
def test_it_reads_pipelined_refusals_in_order(scripted_server_factory, extensions):
    session = MiniSMTP(
        extensions=extensions,
        rcpt_replies={"r1@example.org": "550 5.1.1 No", "r3@example.org": "451 4.2.0 Later"},
    )
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none") as client:
        result = client.send("a@example.org", RCPTS, MSG)
        assert client.noop()  # the reply stream is still in step
    assert result.accepted == ["r0@example.org", "r2@example.org", "r4@example.org"]
    assert {a: r.reply.code for a, r in result.rejected.items()} == {
        "r1@example.org": 550,
        "r3@example.org": 451,
    }
    assert session.messages[0].rcpt_tos == result.accepted


# ------------------------------------------- the next envelope behind the end of the data

SECOND = b"Subject: q\r\n\r\nAgain.\r\n"


def _two_messages(scripted_server_factory, *, ahead: bool, extensions=("PIPELINING",)):
    """Two messages over one connection, the second's envelope sent ahead or not; the server
    thinks a moment before its reply to the first message's data, so that whatever the client
    sends behind that data has arrived when it answers (the count does not hang on timing)."""
    session = MiniSMTP(extensions=extensions, after_data_delay=0.2)
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none", transcript=True) as client:
        calls = []
        if ahead:
            def hook():
                calls.append(1)
                return client.envelope("b@example.org", RCPTS[:2], SECOND)

            client.next_envelope_hook = hook
        before = session.round_trips
        client.send("a@example.org", RCPTS, MSG)
        client.next_envelope_hook = None
        pending = client.pending_envelope
        client.transcript = []
        second = client.send("b@example.org", RCPTS[:2], SECOND)
        trips = session.round_trips - before
        transcript = client.transcript
    assert second.delivered and second.accepted == RCPTS[:2]
    assert [(m.mail_from, m.rcpt_tos, m.content) for m in session.messages] == [
        ("a@example.org", RCPTS, MSG), ("b@example.org", RCPTS[:2], SECOND)]
    return trips, pending, transcript, calls


def test_the_next_envelope_goes_out_behind_the_end_of_the_data(scripted_server_factory):
    trips, pending, transcript, calls = _two_messages(scripted_server_factory, ahead=True)
    # The first message: envelope, then its data; the second's MAIL, RCPTs and DATA went
    # out behind that data, so it takes only its own data: 3 round trips instead of 4.
    assert trips == 3 and calls == [1]
    assert pending is not None and pending.rcpts == tuple(RCPTS[:2])
    # The second message's transcript holds its own envelope, said to have gone ahead.
    assert transcript[0].startswith("[the envelope below went out")
    assert transcript[1] == "C: MAIL FROM:<b@example.org>"
    assert "C: DATA" in transcript and "S: 354 End data with <CR><LF>.<CR><LF>" in transcript


def test_without_the_hook_each_message_takes_two_round_trips(scripted_server_factory):
    trips, pending, _, _ = _two_messages(scripted_server_factory, ahead=False)
    assert trips == 4 and pending is None


def test_with_chunking_nothing_goes_ahead(scripted_server_factory):
    # A message that fits one chunk takes one round trip with its envelope already.
    trips, pending, _, calls = _two_messages(
        scripted_server_factory, ahead=True, extensions=("PIPELINING", "CHUNKING"))
    assert trips == 2 and pending is None and calls == []


def _prepared(scripted_server_factory, **session_options):
    """A connection whose first message is sent and the second's envelope sent ahead (the
    server waits in DATA, having answered 354)."""
    session = MiniSMTP(extensions=("PIPELINING",), **session_options)
    server = scripted_server_factory(session)
    client = SMTPClient(server.host, server.port, security="none")
    client.connect()
    client.next_envelope_hook = lambda: client.envelope("b@example.org", ["x@example.org"],
                                                        SECOND)
    return session, server, client


def _server_done(server, session) -> list[str]:
    """The commands the server read, once its session ended (at the client's close)."""
    for thread in server._threads[1:]:  # [0] accepts; the others run sessions
        thread.join(timeout=5)
    return session.commands


def test_another_message_on_a_prepared_connection_closes_it_and_sends_nothing(
    scripted_server_factory,
):
    session, server, client = _prepared(scripted_server_factory)
    client.send("a@example.org", RCPTS, MSG)
    with pytest.raises(SMTPServerDisconnected, match="prepared for another message"):
        client.send("c@example.org", ["y@example.org"], b"Subject: other\r\n\r\nOther.\r\n")
    assert not client.is_connected
    commands = _server_done(server, session)
    # The server got the envelope sent ahead and waited for its data; nothing ended it.
    assert commands[-3:] == ["MAIL FROM:<b@example.org>", "RCPT TO:<x@example.org>",
                             "DATA"]
    assert [m.mail_from for m in session.messages] == ["a@example.org"]


@pytest.mark.parametrize("call", ["noop", "quit", "rset"])
def test_no_command_is_written_into_a_data_sent_ahead(scripted_server_factory, call):
    session, server, client = _prepared(scripted_server_factory)
    client.send("a@example.org", RCPTS, MSG)
    if call == "rset":
        with pytest.raises(SMTPServerDisconnected):
            client.rset()
    else:
        assert getattr(client, call)() in (False, None)
    assert not client.is_connected
    assert _server_done(server, session)[-1] == "DATA"  # no NOOP/QUIT/RSET as data
    assert len(session.messages) == 1


def test_a_refused_message_with_an_envelope_ahead_closes_the_connection(
    scripted_server_factory,
):
    session, server, client = _prepared(scripted_server_factory, after_data="554 5.7.1 No")
    with pytest.raises(SMTPDataError):
        client.send("a@example.org", RCPTS, MSG)
    assert not client.is_connected  # no RSET written into the DATA sent ahead
    assert _server_done(server, session)[-1] == "DATA"
