"""Every security mode against a real aiosmtpd server."""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient, errors

MSG = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_it_sends_in_every_security_mode(smtp_server_factory, security):
    server = smtp_server_factory(security=security)
    with SMTPClient(**server.client_kwargs()) as client:
        assert client.is_encrypted is (security != "none")
        result = client.send("a@example.org", ["b@example.org"], MSG)
    assert result.delivered
    assert result.accepted == ["b@example.org"]
    assert result.data_reply is not None and result.data_reply.text.startswith("Ok: queued")
    [message] = server.messages
    assert message.content == MSG
    assert message.tls is (security != "none")


def test_it_refuses_starttls_when_not_offered_and_sends_nothing(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs(security="starttls"), transcript=True)
    with pytest.raises(errors.SMTPStartTLSNotSupported) as caught:
        client.connect()
    assert not caught.value.transient
    assert caught.value.phase == "starttls"
    assert not client.is_connected
    # Only the EHLO went out before the refusal: no MAIL, no AUTH in plaintext.
    assert [line for line in client.transcript if line.startswith("C:")] == [
        f"C: EHLO {client.local_hostname}"
    ]


def test_it_stops_when_the_server_refuses_to_start_tls(scripted_server_factory):
    def session(conn):
        conn.reply("220 notls.test ESMTP")
        conn.readline()
        conn.reply("250-notls.test", "250 STARTTLS")
        conn.readline()
        conn.reply("454 4.7.0 TLS not available due to temporary reason")
        while line := conn.readline():
            conn.seen_after_refusal = line  # anything here would be a plaintext leak

    server = scripted_server_factory(session)
    client = SMTPClient(server.host, server.port, security="starttls", username="u", secret="p")
    with pytest.raises(errors.SMTPTLSError) as caught:
        client.connect()
    assert caught.value.transient and caught.value.reply.code == 454
    assert not client.is_connected
    server.stop()
    assert not hasattr(server.connections[0], "seen_after_refusal")


def test_it_is_refused_by_a_server_that_requires_starttls_when_sending_plain(smtp_server_factory):
    server = smtp_server_factory(security="starttls", require_starttls=True)
    with SMTPClient(**server.client_kwargs(security="none")) as client:
        with pytest.raises(errors.SMTPSenderRefused) as caught:
            client.send("a@example.org", ["b@example.org"], MSG)
    assert caught.value.reply.code == 530 and not caught.value.transient
    assert server.messages == []
