"""Bytes the server (or a man in the middle) sends after the 220 to STARTTLS, before the TLS
handshake, must never be read as if they came over TLS (the aiosmtplib 5.1.2 class)."""

from __future__ import annotations

from mailer.smtp import SMTPClient


def injecting_session(certificates, seen):
    def session(conn):
        conn.reply("220 inject.test ESMTP")
        conn.readline()
        conn.reply("250-inject.test", "250 STARTTLS")
        assert conn.readline().startswith(b"STARTTLS")
        # One write: the 220 plus a forged EHLO reply that offers no AUTH and a tiny SIZE.
        conn.send(b"220 Go ahead\r\n250-forged\r\n250 SIZE 10\r\n")
        conn.starttls(certificates.server_context())
        seen.append(conn.readline())
        conn.reply("250-inject.test", "250-SIZE 5000000", "250 AUTH PLAIN")
        while line := conn.readline():
            seen.append(line)
            if line.startswith(b"QUIT"):
                conn.reply("221 Bye")
                return
            conn.reply("250 Ok")

    return session


def test_it_discards_bytes_sent_before_the_tls_handshake(scripted_server_factory, tls_certificates):
    seen: list[bytes] = []
    server = scripted_server_factory(injecting_session(tls_certificates, seen))
    client = SMTPClient(
        server.host,
        server.port,
        security="starttls",
        cadata=tls_certificates.ca_pem,
        transcript=True,
        command_timeout=5,
    )
    caps = client.connect()
    # The capabilities are the ones sent over TLS, not the forged ones.
    assert caps.size == 5000000 and caps.auth == ("PLAIN",)
    assert seen[0].startswith(b"EHLO ")
    assert any(line.startswith("[discarded") for line in client.transcript)
    assert client.noop()
    client.quit()
