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


def test_it_names_each_original_recipient_when_asked(scripted_server_factory):
    session = MiniSMTP(extensions=("PIPELINING", "DSN", "SMTPUTF8"))
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none") as client:
        client.send("a@example.org", ["b+tag@example.org", "jörg@example.org"], MSG,
                    dsn_notify=["FAILURE", "DELAY"], dsn_orcpt=True)
    rcpts = [c for c in session.commands if c.startswith("RCPT")]
    assert rcpts == [
        "RCPT TO:<b+tag@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b+2Btag@example.org",
        # no ASCII form of a UTF-8 address: ORCPT (optional) is left out
        "RCPT TO:<jörg@example.org> NOTIFY=FAILURE,DELAY",
    ]


def test_orcpt_is_left_out_when_dsn_is_not_offered(scripted_server_factory):
    commands = send(scripted_server_factory, ("PIPELINING",), dsn_orcpt=True)
    assert commands == ["MAIL FROM:<a@example.org>", "RCPT TO:<b@example.org>"]


def test_it_sends_dsn_one_command_at_a_time_too(scripted_server_factory):
    commands = send(scripted_server_factory, ("DSN",), dsn_notify=["FAILURE"], envid="e1",
                    dsn_ret="HDRS", dsn_orcpt=True)
    assert commands == ["MAIL FROM:<a@example.org> RET=HDRS ENVID=e1",
                        "RCPT TO:<b@example.org> NOTIFY=FAILURE ORCPT=rfc822;b@example.org"]
