"""PIPELINING (RFC 2920) is really used: the server counts how often the client had to wait
for it (reply flushes, i.e. round trips) and how many reads the commands took."""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient
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
