"""Certificate verification: on by default, a private CA can be trusted, or it can be off."""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient, errors
from tests.smtp_servers import TLSCertificates

MSG = b"Subject: tls\r\n\r\nHello.\r\n"


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_it_refuses_an_untrusted_certificate_in_plain_words(
    smtp_server_factory, untrusted_certificates, security
):
    server = smtp_server_factory(security=security, certificates=untrusted_certificates)
    # The client trusts the system store only: the test CA is unknown to it.
    client = SMTPClient(server.host, server.port, security=security, command_timeout=10)
    with pytest.raises(errors.SMTPCertificateError) as caught:
        client.connect()
    error = caught.value
    assert isinstance(error, errors.SMTPTLSError)
    assert not error.transient and not errors.is_transient(error)
    assert error.phase == ("starttls" if security == "starttls" else "connect")
    assert "certificate could not be verified" in str(error)
    assert "CA certificate" in str(error)
    assert not client.is_connected
    assert server.messages == []


@pytest.mark.parametrize("how", ["cafile", "cadata"])
def test_it_accepts_the_certificate_with_its_ca(smtp_server_factory, untrusted_certificates, how):
    server = smtp_server_factory(security="starttls", certificates=untrusted_certificates)
    trust = (
        {"cafile": untrusted_certificates.ca_file}
        if how == "cafile"
        else {"cadata": untrusted_certificates.ca_pem}
    )
    with SMTPClient(server.host, server.port, security="starttls", **trust) as client:
        assert client.send("a@example.org", ["b@example.org"], MSG).delivered
    assert len(server.messages) == 1


def test_it_refuses_a_certificate_for_another_host_name(smtp_server_factory, tls_certificates):
    # Signed by the trusted CA, but for another name than the one we connect to.
    other = TLSCertificates(
        ca=tls_certificates.ca,
        cert=tls_certificates.ca.issue_cert("mail.example.org"),
        ca_file=tls_certificates.ca_file,
    )
    server = smtp_server_factory(security="tls", certificates=other)
    client = SMTPClient(**server.client_kwargs())
    with pytest.raises(errors.SMTPCertificateError) as caught:
        client.connect()
    assert "127.0.0.1" in str(caught.value)


def test_it_connects_without_verification_when_told_to(smtp_server_factory, untrusted_certificates):
    server = smtp_server_factory(security="tls", certificates=untrusted_certificates)
    with SMTPClient(server.host, server.port, security="tls", verify=False) as client:
        assert client.is_encrypted
        assert client.send("a@example.org", ["b@example.org"], MSG).delivered


def test_it_explains_a_ca_that_cannot_be_loaded(smtp_server_factory):
    server = smtp_server_factory(security="tls")
    client = SMTPClient(**server.client_kwargs(cadata="not a certificate"))
    with pytest.raises(errors.SMTPCertificateError) as caught:
        client.connect()
    assert "PEM" in str(caught.value)


def test_it_fails_the_handshake_against_a_plain_server_as_transient(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs(security="tls"))
    with pytest.raises(errors.SMTPTLSError) as caught:
        client.connect()
    assert not isinstance(caught.value, errors.SMTPCertificateError)
    assert caught.value.transient
    assert "465" in str(caught.value)
