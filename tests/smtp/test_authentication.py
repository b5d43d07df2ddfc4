"""Every AUTH mechanism against a real aiosmtpd server behind STARTTLS."""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient, errors
from tests.smtp_servers import MiniSMTP

MSG = b"Subject: auth\r\n\r\nHello.\r\n"
ACCOUNTS = {"alice@example.org": "correct horse battery"}
MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"]


@pytest.fixture
def auth_server(smtp_server_factory):
    return smtp_server_factory(security="starttls", accounts=ACCOUNTS)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_it_authenticates_with_every_mechanism(auth_server, mechanism):
    kwargs = auth_server.client_kwargs(
        username="alice@example.org", secret="correct horse battery", auth_mechanism=mechanism
    )
    with SMTPClient(**kwargs) as client:
        assert client.auth_mechanism_used == mechanism
        assert client.send("alice@example.org", ["bob@example.org"], MSG).delivered
    assert auth_server.messages[0].login == "alice@example.org"
    assert auth_server.handler.login_attempts == [(mechanism, "alice@example.org")]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_it_reports_a_wrong_password_as_permanent(auth_server, mechanism):
    client = SMTPClient(
        **auth_server.client_kwargs(
            username="alice@example.org", secret="wrong", auth_mechanism=mechanism
        )
    )
    with pytest.raises(errors.SMTPAuthenticationError) as caught:
        client.connect()
    error = caught.value
    assert error.reply is not None and error.reply.code == 535
    assert not error.transient and not errors.is_transient(error)
    assert error.phase == "auth"
    assert "refused the user name or password" in str(error)
    assert not client.is_connected


def test_it_reports_454_as_transient_with_the_server_text(auth_server):
    auth_server.handler.reply_at("auth", "454 4.7.0 Temporary authentication failure")
    client = SMTPClient(**auth_server.client_kwargs(username="alice@example.org", secret="x"))
    with pytest.raises(errors.SMTPAuthenticationError) as caught:
        client.connect()
    assert caught.value.transient
    assert caught.value.reply.enhanced == "4.7.0"
    assert "Temporary authentication failure" in str(caught.value)


def test_it_picks_plain_automatically_over_tls(auth_server):
    kwargs = auth_server.client_kwargs(username="alice@example.org", secret="correct horse battery")
    with SMTPClient(**kwargs) as client:
        assert client.auth_mechanism_used == "PLAIN"


def test_it_never_sends_auth_over_plaintext_unless_allowed(smtp_server_factory):
    server = smtp_server_factory(accounts=ACCOUNTS, auth_require_tls=False)
    refused = SMTPClient(
        **server.client_kwargs(username="alice@example.org", secret="correct horse battery"),
        transcript=True,
    )
    with pytest.raises(errors.SMTPPlaintextAuthRefused):
        refused.connect()
    assert not any(line.startswith("C: AUTH") for line in refused.transcript)
    assert server.handler.login_attempts == []

    allowed = SMTPClient(
        **server.client_kwargs(username="alice@example.org", secret="correct horse battery"),
        allow_plaintext_auth=True,
    )
    with allowed:
        # Without TLS, "auto" prefers CRAM-MD5, which keeps the password off the wire.
        assert allowed.auth_mechanism_used == "CRAM-MD5"


def test_it_says_when_no_mechanism_fits(smtp_server_factory):
    server = smtp_server_factory(security="starttls", accounts=ACCOUNTS, auth_mechanisms=("LOGIN",))
    client = SMTPClient(**server.client_kwargs(username="a", secret="b", auth_mechanism="XOAUTH2"))
    with pytest.raises(errors.SMTPAuthNotSupported) as caught:
        client.connect()
    assert "LOGIN" in str(caught.value) and not caught.value.transient


def test_it_says_when_the_server_offers_no_auth(scripted_server_factory):
    # aiosmtpd always advertises AUTH, so this uses the raw scripted server.
    server = scripted_server_factory(MiniSMTP())
    client = SMTPClient(
        server.host,
        server.port,
        security="none",
        username="a",
        secret="b",
        allow_plaintext_auth=True,
    )
    with pytest.raises(errors.SMTPAuthNotSupported) as caught:
        client.connect()
    assert "does not offer authentication" in str(caught.value)
