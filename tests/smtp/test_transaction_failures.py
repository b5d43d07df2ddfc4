"""4xx and 5xx at MAIL, at RCPT (partial acceptance), at DATA and after the data; after each
failure the connection is RSET and the next message goes through on it."""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient, errors

MSG = b"Subject: t\r\n\r\nHello.\r\n"
OK, LATER, NOBODY = "ok@example.org", "later@example.org", "nobody@example.org"


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def smtp_server(request, smtp_server_factory):
    return smtp_server_factory(pipelining=request.param)


@pytest.fixture
def client(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs(), transcript=True) as client:
        assert client.capabilities.pipelining is smtp_server.handler.pipelining
        yield client


def assert_still_usable(client, server):
    """RSET was sent and the same connection delivers the next message."""
    assert client.is_connected
    assert "C: RSET" in client.transcript
    before = len(server.messages)
    assert client.send("a@example.org", [OK], MSG).delivered
    assert len(server.messages) == before + 1


@pytest.mark.parametrize(
    ("reply", "transient"), [("451 4.3.0 Try later", True), ("550 5.7.1 Go away", False)]
)
def test_it_reports_a_refused_sender(client, smtp_server, reply, transient):
    smtp_server.handler.reply_at("mail", reply, times=1)
    with pytest.raises(errors.SMTPSenderRefused) as caught:
        client.send("a@example.org", [OK], MSG)
    error = caught.value
    assert error.sender == "a@example.org"
    assert error.phase == "mail"
    assert error.transient is transient and errors.is_transient(error) is transient
    assert str(error.reply) == reply
    assert "a@example.org" in str(error)
    assert_still_usable(client, smtp_server)


def test_it_returns_partial_acceptance_with_every_recipient_described(client, smtp_server):
    smtp_server.handler.reply_at("rcpt", "451 4.3.0 Mailbox busy", address=LATER)
    smtp_server.handler.reply_at("rcpt", "550 5.1.1 No such user", address=NOBODY)
    result = client.send("a@example.org", [OK, LATER, NOBODY], MSG)
    assert result.delivered
    assert result.accepted == [OK]
    assert [r.address for r in result.recipients] == [OK, LATER, NOBODY]
    later, nobody = result.rejected[LATER], result.rejected[NOBODY]
    assert (later.reply.code, later.reply.enhanced, later.transient) == (451, "4.3.0", True)
    assert (nobody.reply.code, nobody.reply.enhanced, nobody.transient) == (550, "5.1.1", False)
    assert nobody.reply.text == "No such user"
    as_dict = result.to_dict()
    assert as_dict["accepted"] == [OK]
    assert as_dict["rejected"][NOBODY] == {
        "code": 550,
        "enhanced": "5.1.1",
        "text": "No such user",
        "transient": False,
    }
    assert smtp_server.messages[0].rcpt_tos == [OK]


@pytest.mark.parametrize(
    ("replies", "transient"),
    [
        (["451 4.3.0 Busy", "452 4.2.2 Full"], True),
        (["451 4.3.0 Busy", "550 5.1.1 No such user"], False),
        (["550 5.1.1 No such user", "553 5.1.3 Bad address"], False),
    ],
)
def test_it_raises_when_every_recipient_is_refused(client, smtp_server, replies, transient):
    for address, reply in zip([LATER, NOBODY], replies, strict=True):
        smtp_server.handler.reply_at("rcpt", reply, address=address, times=1)
    with pytest.raises(errors.SMTPRecipientsRefused) as caught:
        client.send("a@example.org", [LATER, NOBODY], MSG)
    error = caught.value
    assert error.transient is transient
    assert error.phase == "rcpt"
    assert error.result.accepted == []
    assert [str(r.reply) for r in error.result.recipients] == replies
    assert smtp_server.messages == []
    assert_still_usable(client, smtp_server)


@pytest.mark.parametrize(
    ("reply", "transient"), [("451 4.3.0 Not now", True), ("554 5.5.1 No", False)]
)
def test_it_reports_a_refused_data_command(client, smtp_server, reply, transient):
    smtp_server.handler.reply_at("data", reply, times=1)
    with pytest.raises(errors.SMTPDataError) as caught:
        client.send("a@example.org", [OK], MSG)
    assert caught.value.phase == "data"
    assert caught.value.transient is transient
    assert caught.value.result.accepted == [OK]
    assert not caught.value.result.delivered
    assert smtp_server.messages == []
    assert_still_usable(client, smtp_server)


@pytest.mark.parametrize(
    ("reply", "transient"), [("451 4.3.0 Queue full", True), ("554 5.7.1 Spam", False)]
)
def test_it_reports_a_refusal_after_the_data(client, smtp_server, reply, transient):
    smtp_server.handler.reply_at("after-data", reply, times=1)
    with pytest.raises(errors.SMTPDataError) as caught:
        client.send("a@example.org", [OK], MSG)
    error = caught.value
    assert not isinstance(error, errors.SMTPMessageTooLarge)
    assert error.phase == "after-data"
    assert error.transient is transient
    assert error.result.data_reply is not None and str(error.result.data_reply) == reply
    assert not error.result.delivered
    assert smtp_server.handler.refused[0].content == MSG
    assert_still_usable(client, smtp_server)


def test_it_reports_552_after_the_data_as_too_large(client, smtp_server):
    smtp_server.handler.reply_at("after-data", "552 5.3.4 Message too big", times=1)
    with pytest.raises(errors.SMTPMessageTooLarge) as caught:
        client.send("a@example.org", [OK], MSG)
    assert not caught.value.transient
    assert "too large" in str(caught.value)
    assert_still_usable(client, smtp_server)


def test_it_treats_a_421_as_the_end_of_the_connection(client, smtp_server):
    smtp_server.handler.reply_at("rcpt", "421 4.3.2 Shutting down", times=1)
    with pytest.raises(errors.SMTPServerDisconnected) as caught:
        client.send("a@example.org", [OK], MSG)
    assert caught.value.transient and caught.value.reply.code == 421
    assert not client.is_connected
