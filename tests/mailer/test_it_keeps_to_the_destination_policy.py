"""The operator's destination policy (mailer.destinations), checked inside the SMTP client
on every resolved address: internal ranges refused in production for non-staff users, an
allow list, IPv6 and v4-mapped addresses, a refused destination pauses the account with
plain words (nothing is retried against it), and a non-SMTP peer is not echoed back."""

from __future__ import annotations

import socket
import threading

import pytest
from django.test import override_settings

from mailer import delivery, destinations, services
from mailer.models import SmtpAccount
from mailer.smtp.client import SMTPClient
from mailer.smtp.errors import SMTPDestinationRefused, SMTPProtocolError
from tests.mailer.base import make_account, send

PRODUCTION_POLICY = override_settings(MAILROOM_DESTINATIONS_DENY=["internal"],
                                      MAILROOM_DESTINATIONS_ALLOW=[],
                                      MAILROOM_DESTINATIONS_STAFF_EXEMPT=True)


@PRODUCTION_POLICY
@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "::1", "10.0.0.5", "172.16.9.9", "192.168.1.1", "100.64.0.1",
    "169.254.169.254", "fe80::1", "fe80::1%eth0", "fc00::5", "::ffff:10.0.0.1", "0.0.0.0",
    "224.0.0.1",
])
def test_it_denies_internal_addresses(address):
    assert "not allowed to connect" in destinations.refusal(address)


@PRODUCTION_POLICY
@pytest.mark.parametrize("address", ["192.0.2.1", "203.0.113.7", "2001:db8::25", "8.8.8.8"])
def test_it_allows_public_addresses(address):
    assert destinations.refusal(address) is None


@override_settings(MAILROOM_DESTINATIONS_DENY=["internal"],
                   MAILROOM_DESTINATIONS_ALLOW=["10.0.0.25/32", "::1"])
def test_an_allowed_network_wins_over_a_denied_one():
    assert destinations.refusal("10.0.0.25") is None and destinations.refusal("::1") is None
    assert destinations.refusal("10.0.0.26") is not None


def test_the_embedded_default_denies_nothing(owner, account):
    assert destinations.check_for(account) is None


@PRODUCTION_POLICY
def test_staff_are_exempt_unless_the_operator_says_otherwise(owner, account):
    assert destinations.check_for(account) is destinations.refusal
    owner.is_staff = True
    owner.save()
    account = SmtpAccount.objects.get(pk=account.pk)
    assert destinations.check_for(account) is None
    with override_settings(MAILROOM_DESTINATIONS_STAFF_EXEMPT=False):
        assert destinations.check_for(account) is destinations.refusal


def test_the_client_refuses_before_sending_a_byte(smtp_server):
    checked = []

    def check(address):
        checked.append(address)
        return "Not there (test policy)."

    client = SMTPClient(smtp_server.host, smtp_server.port, security="none",
                        destination_check=check)
    with pytest.raises(SMTPDestinationRefused, match="Not there") as refused:
        client.connect()
    assert refused.value.phase == "connect" and not refused.value.transient
    assert checked == ["127.0.0.1"]
    assert smtp_server.handler.messages == [] and not client.is_connected


def test_a_name_with_one_allowed_address_connects_to_that_one(smtp_server):
    # "localhost" resolves to ::1 and 127.0.0.1 here; only 127.0.0.1 (where the server
    # listens) is allowed, so the client must connect to exactly that checked address.
    infos = {i[4][0] for i in socket.getaddrinfo("localhost", smtp_server.port, 0,
                                                 socket.SOCK_STREAM)}
    assert "127.0.0.1" in infos
    client = SMTPClient("localhost", smtp_server.port, security="none",
                        destination_check=lambda a: None if a == "127.0.0.1" else "no")
    client.connect()
    assert client._sock.getpeername()[0] == "127.0.0.1"
    client.quit()


@PRODUCTION_POLICY
def test_a_delivery_to_a_denied_address_pauses_the_account(owner, account, server):
    message = send(owner, account, to="ann@example.org")
    assert delivery.deliver(message.pk) == "paused"
    account.refresh_from_db()
    message.refresh_from_db()
    assert account.paused_at is not None and "destination policy" in account.paused_reason
    assert message.status == "deferred" and server.received == []


@PRODUCTION_POLICY
def test_a_connection_check_to_a_denied_address_says_why(owner, account, server):
    result = services.check_account(owner, account)
    assert not result.ok
    assert "not allowed to connect" in result.verdict
    assert "not allowed to connect to 127.0.0.1" in result.error
    assert server.received == []


def test_a_non_smtp_peer_is_not_echoed(owner):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def banner():
        conn, _ = listener.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.6 secret-internal-host\r\n")
        conn.recv(100)
        conn.close()

    threading.Thread(target=banner, daemon=True).start()
    account = make_account(owner, None, port=port)
    result = services.check_account(owner, account)
    listener.close()
    assert not result.ok and "did not answer like a mail server" in result.error
    shown = f"{result.verdict} {result.transcript} {result.error}"
    assert "SSH" not in shown and "secret-internal-host" not in shown
    client = SMTPClient("127.0.0.1", port, security="none")
    with pytest.raises((SMTPProtocolError, ConnectionError)):
        client.connect()
