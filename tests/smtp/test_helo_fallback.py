"""A server that does not know EHLO gets HELO and a plain RFC 821 dialogue."""

from __future__ import annotations

from mailer.smtp import SMTPClient
from tests.smtp_servers import MiniSMTP

MSG = b"Subject: helo\r\n\r\n.leading dot\r\nbye\r\n"


def test_it_falls_back_to_helo_and_sends(scripted_server_factory):
    session = MiniSMTP(ehlo=False)
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none") as client:
        caps = client.capabilities
        assert caps is not None and not caps.esmtp and caps.extensions == {}
        result = client.send("a@example.org", ["b@example.org"], MSG)
    assert result.delivered
    assert session.commands[:2] == [
        f"EHLO {client.local_hostname}",
        f"HELO {client.local_hostname}",
    ]
    [message] = session.messages
    assert message.via == "DATA" and message.content == MSG
    assert message.mail_params == ""  # no ESMTP parameters to an RFC 821 server
