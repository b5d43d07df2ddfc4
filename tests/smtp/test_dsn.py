"""DSN (RFC 3461): NOTIFY, RET and ENVID when asked for and offered."""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient, errors
from tests.smtp_servers import MiniSMTP

MSG = b"Subject: d\r\n\r\nHello.\r\n"


def send(scripted_server_factory, extensions, **dsn):
    session = MiniSMTP(extensions=extensions)
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none") as client:
        client.send("a@example.org", ["b@example.org"], MSG, **dsn)
    return [c for c in session.commands if c.startswith(("MAIL", "RCPT"))]


def test_it_sends_dsn_parameters_when_offered(scripted_server_factory):
    commands = send(
        scripted_server_factory,
        ("PIPELINING", "DSN"),
        dsn_notify=["success", "FAILURE"],
        dsn_ret="hdrs",
        envid="id+1=x y",
    )
    assert commands == [
        "MAIL FROM:<a@example.org> RET=HDRS ENVID=id+2B1+3Dx+20y",
        "RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE",
    ]


def test_it_leaves_them_out_when_not_offered(scripted_server_factory):
    commands = send(scripted_server_factory, ("PIPELINING",), dsn_notify=["NEVER"], envid="x")
    assert commands == ["MAIL FROM:<a@example.org>", "RCPT TO:<b@example.org>"]


@pytest.mark.parametrize(
    "dsn",
    [{"dsn_notify": ["NEVER", "SUCCESS"]}, {"dsn_notify": ["SOMETIMES"]}, {"dsn_ret": "ALL"}],
)
def test_it_refuses_invalid_dsn_values(smtp_server, dsn):
    with SMTPClient(**smtp_server.client_kwargs()) as client:
        with pytest.raises(errors.SMTPCommandArgumentError):
            client.send("a@example.org", ["b@example.org"], MSG, **dsn)
