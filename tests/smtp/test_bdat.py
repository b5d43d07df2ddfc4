"""CHUNKING / BDAT (RFC 3030): the body goes without dot-stuffing, CRLF-normalised, in
chunks, the last one ``BDAT n LAST``."""

from __future__ import annotations

import io

import pytest

from mailer.smtp import SMTPClient, errors
from mailer.smtp.data import BLOCK_SIZE, normalise
from tests.smtp_servers import MiniSMTP

DOTS = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nbare\nlf and bare\rcr"


@pytest.mark.parametrize("pipelining", [True, False])
def test_it_sends_small_messages_as_one_last_chunk_without_dot_stuffing(
    scripted_server_factory, pipelining
):
    extensions = ("CHUNKING", "PIPELINING") if pipelining else ("CHUNKING",)
    session = MiniSMTP(extensions=extensions)
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none") as client:
        result = client.send("a@example.org", ["b@example.org"], DOTS)
    assert result.delivered and result.data_reply.code == 250
    [message] = session.messages
    assert message.via == "BDAT"
    assert message.content == normalise(DOTS)
    assert [c for c in session.commands if c.startswith("BDAT")] == [
        f"BDAT {len(normalise(DOTS))} LAST"
    ]


@pytest.mark.parametrize("pipelining", [True, False])
def test_it_sends_large_messages_in_chunks(scripted_server_factory, pipelining):
    extensions = ("CHUNKING", "PIPELINING") if pipelining else ("CHUNKING",)
    session = MiniSMTP(extensions=extensions)
    server = scripted_server_factory(session)
    body = b"".join(b"line %d\n" % i for i in range(200_000))  # ~1.4 MB, bare LFs
    with SMTPClient(server.host, server.port, security="none") as client:
        assert client.send("a@example.org", ["b@example.org"], io.BytesIO(body)).delivered
        assert client.noop()
    expected = normalise(body)
    assert session.messages[0].content == expected
    chunks = [c for c in session.commands if c.startswith("BDAT")]
    assert len(chunks) >= 4 and chunks[-1].endswith(" LAST")
    assert all(int(c.split()[1]) >= BLOCK_SIZE for c in chunks[:-1])


def test_it_stops_and_resets_when_a_chunk_is_refused(scripted_server_factory):
    def session(conn):
        conn.reply("220 bdat.test ESMTP")
        while line := conn.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.reply("250-bdat.test", "250 CHUNKING")
            elif verb == b"BDAT":
                conn.read_exact(int(line.split()[1]))
                conn.reply("552 5.3.4 Chunk too big for me")
            elif verb == b"QUIT":
                conn.reply("221 Bye")
                return
            else:
                conn.reply("250 Ok")

    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none", transcript=True) as client:
        with pytest.raises(errors.SMTPMessageTooLarge):
            client.send("a@example.org", ["b@example.org"], b"x\r\n" * 100_000)
        assert client.transcript[-2:] == ["C: RSET", "S: 250 Ok"]
        assert client.is_connected
