"""8BITMIME (BODY=8BITMIME when the body has 8-bit bytes) and SMTPUTF8 (when an address or a
header needs it), against aiosmtpd, and a clear refusal where the server lacks them."""

from __future__ import annotations

import io

import pytest

from mailer.smtp import SMTPClient, errors
from tests.smtp_servers import MiniSMTP

ASCII = b"Subject: plain\r\n\r\nHello.\r\n"
EIGHT_BIT_BODY = "Subject: plain\r\n\r\nGrüße aus Köln.\r\n".encode()
UTF8_HEADER = "Subject: Grüße\r\n\r\nHello.\r\n".encode()


@pytest.fixture
def client(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs()) as client:
        yield client


def test_it_declares_nothing_for_ascii(client, smtp_server):
    client.send("a@example.org", ["b@example.org"], ASCII)
    assert smtp_server.messages[0].mail_options == [f"SIZE={len(ASCII)}"]


@pytest.mark.parametrize("as_file", [False, True])
def test_it_declares_8bitmime_for_an_8bit_body(client, smtp_server, as_file):
    message = io.BytesIO(EIGHT_BIT_BODY) if as_file else EIGHT_BIT_BODY
    client.send("a@example.org", ["b@example.org"], message)
    [received] = smtp_server.messages
    assert "BODY=8BITMIME" in received.mail_options
    assert "SMTPUTF8" not in received.mail_options
    assert received.content == EIGHT_BIT_BODY


@pytest.mark.parametrize("as_file", [False, True])
def test_it_uses_smtputf8_for_a_utf8_header(client, smtp_server, as_file):
    message = io.BytesIO(UTF8_HEADER) if as_file else UTF8_HEADER
    client.send("a@example.org", ["b@example.org"], message)
    assert "SMTPUTF8" in smtp_server.messages[0].mail_options


def test_it_uses_smtputf8_for_a_utf8_address(client, smtp_server):
    result = client.send("jörg@example.org", ["zoë@exämple.org"], ASCII)
    assert result.accepted == ["zoë@exämple.org"]
    [received] = smtp_server.messages
    assert "SMTPUTF8" in received.mail_options
    assert received.mail_from == "jörg@example.org"
    assert received.rcpt_tos == ["zoë@exämple.org"]


@pytest.fixture
def old_server(scripted_server_factory):
    session = MiniSMTP(extensions=("PIPELINING",))
    return session, scripted_server_factory(session)


@pytest.mark.parametrize(
    ("sender", "message", "needs"),
    [
        ("jörg@example.org", ASCII, "SMTPUTF8"),
        ("a@example.org", UTF8_HEADER, "SMTPUTF8"),
        ("a@example.org", EIGHT_BIT_BODY, "8BITMIME"),
    ],
)
def test_it_refuses_clearly_when_the_server_lacks_the_extension(old_server, sender, message, needs):
    session, server = old_server
    with SMTPClient(server.host, server.port, security="none") as client:
        with pytest.raises(errors.SMTPNotSupported) as caught:
            client.send(sender, ["b@example.org"], message)
        assert needs in str(caught.value)
        assert not caught.value.transient
        assert client.noop()
    assert not any(c.startswith("MAIL") for c in session.commands)


def test_it_lets_the_caller_override_detection(old_server):
    session, server = old_server
    with SMTPClient(server.host, server.port, security="none") as client:
        assert client.send("a@example.org", ["b@example.org"], EIGHT_BIT_BODY, body_8bit=False)
    assert session.messages[0].content == EIGHT_BIT_BODY
