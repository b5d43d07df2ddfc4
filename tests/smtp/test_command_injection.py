"""No CR, LF or other control character in any argument can reach the wire, let alone as a
second command: the client refuses before sending anything."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.smtp import SMTPClient, errors
from tests.smtp_servers import MiniSMTP

MSG = b"Subject: i\r\n\r\nHello.\r\n"
INJECT = "\r\nRCPT TO:<evil@example.org>"


@pytest.fixture
def mini(scripted_server_factory):
    session = MiniSMTP(extensions=("PIPELINING", "DSN", "SMTPUTF8", "8BITMIME"))
    server = scripted_server_factory(session)
    client = SMTPClient(server.host, server.port, security="none")
    client.connect()
    yield session, client
    client.quit()


def assert_nothing_injected(session):
    assert not any("evil" in command for command in session.commands)
    assert not any(c.startswith(("MAIL", "RCPT", "DATA")) for c in session.commands)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"envelope_from": "a@example.org" + INJECT},
        {"recipients": ["b@example.org" + INJECT]},
        {"recipients": ["ok@example.org", "b@example.org\nQUIT"]},
        {"envid": "id" + INJECT},
        {"envelope_from": "a@example.org\x00"},
        {"recipients": ["b@example.org\rDATA"]},
    ],
)
def test_it_refuses_control_characters_in_send_arguments(mini, kwargs):
    session, client = mini
    args = {"envelope_from": "a@example.org", "recipients": ["b@example.org"], "message": MSG}
    args.update(kwargs)
    with pytest.raises(errors.SMTPCommandArgumentError) as caught:
        client.send(**args)
    assert isinstance(caught.value, ValueError) and not caught.value.transient
    assert "control character" in str(caught.value)
    assert client.noop()
    assert_nothing_injected(session)


@given(
    prefix=st.text(max_size=20),
    control=st.sampled_from(["\r", "\n", "\r\n", "\x00", "\x1b", "\x7f", "\t"]),
    suffix=st.text(max_size=20),
    where=st.sampled_from(["envelope_from", "recipient", "envid"]),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_it_never_lets_a_control_character_through(mini, prefix, control, suffix, where):
    session, client = mini
    value = prefix + control + suffix + "evil"
    args = {"envelope_from": "a@example.org", "recipients": ["b@example.org"], "envid": None}
    if where == "recipient":
        args["recipients"] = [value]
    else:
        args[where] = value
    with pytest.raises(errors.SMTPCommandArgumentError):
        client.send(args["envelope_from"], args["recipients"], MSG, envid=args["envid"])
    assert_nothing_injected(session)


def test_it_refuses_a_control_character_in_the_ehlo_name():
    for name in ["host" + INJECT, "host\n", "a b", "hôst.example"]:
        with pytest.raises(errors.SMTPCommandArgumentError):
            SMTPClient("127.0.0.1", 25, local_hostname=name)


@pytest.mark.parametrize("field", ["username", "secret"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"])
def test_it_refuses_a_control_character_in_auth_data(smtp_server_factory, field, mechanism):
    server = smtp_server_factory(security="starttls", accounts={"u": "p"})
    creds = {"username": "u", "secret": "p"}
    creds[field] += INJECT
    client = SMTPClient(**server.client_kwargs(**creds, auth_mechanism=mechanism))
    with pytest.raises(errors.SMTPCommandArgumentError):
        client.connect()
    assert server.handler.login_attempts == []
    assert not client.is_connected
