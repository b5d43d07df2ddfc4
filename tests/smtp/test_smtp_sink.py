"""Against a real MTA's protocol engine: Postfix's smtp-sink (PIPELINING, DSN, 8BITMIME)."""

from __future__ import annotations

import io

from mailer.smtp import SMTPClient

MSG = b"Subject: sink\r\n\r\n.dot line\r\nbody\r\n"


def test_it_delivers_many_pipelined_messages_to_smtp_sink(smtp_sink):
    with SMTPClient(smtp_sink.host, smtp_sink.port, security="none", transcript=True) as client:
        caps = client.capabilities
        assert caps.pipelining and caps.dsn and caps.enhancedstatuscodes
        for i in range(50):
            result = client.send(
                "a@example.org",
                [f"r{i}-{n}@example.org" for n in range(5)],
                MSG,
                dsn_notify=["FAILURE"],
                envid=f"id-{i}",
            )
            assert result.delivered and len(result.accepted) == 5
            assert result.data_reply.enhanced == "2.0.0"
        big = io.BytesIO(b"Subject: big\n\n" + b"y" * 70 + b"\n" * 30_000)
        assert client.send("a@example.org", ["b@example.org"], big).delivered
        assert client.noop()
    assert "C: MAIL FROM:<a@example.org> SIZE=22 ENVID=id-0" not in client.transcript  # no SIZE
    assert "C: MAIL FROM:<a@example.org> ENVID=id-0" in client.transcript
    assert "C: RCPT TO:<r0-0@example.org> NOTIFY=FAILURE" in client.transcript
