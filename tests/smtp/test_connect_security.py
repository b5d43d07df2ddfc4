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
