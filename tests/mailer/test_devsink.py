"""The development sink, through stdlib smtplib (an independent client) on loopback."""

from __future__ import annotations

import json
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from django.core.management import CommandError, call_command

from mailer.devsink import DevSink, ensure_certificate, parse_auth
from tests.ports import free_port


def _message(subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "me@example.test"
    msg["To"] = "you@example.test"
    msg["Subject"] = subject
    msg.set_content("line one\n.starts with a dot\n")
    return msg


def test_it_stores_the_exact_bytes_and_the_envelope(tmp_path):
    raw = _message().as_bytes()
    with DevSink(tmp_path, port=free_port()) as sink:
        with smtplib.SMTP(sink.host, sink.port) as client:
            client.sendmail("bounce@example.test", ["a@example.test", "b@example.test"], raw)
        emls = sink.messages()
        assert len(emls) == 1
        # smtplib dot-stuffs the line starting with "."; the sink unstuffs it again.
        assert b"\r\n.starts" in raw
        assert emls[0].read_bytes() == raw
        meta = json.loads(emls[0].with_suffix(".json").read_text())
        assert meta["mail_from"] == "bounce@example.test"
        assert meta["rcpt_tos"] == ["a@example.test", "b@example.test"]
        assert meta["tls"] is False and meta["authenticated"] is False
        assert (sink.stats.messages, sink.stats.recipients, sink.stats.connections) == (1, 2, 1)


def test_it_counts_connections_without_storing(tmp_path):
    with DevSink(None, port=free_port()) as sink:
        for _ in range(3):
            with smtplib.SMTP(sink.host, sink.port) as client:
                client.sendmail("a@example.test", ["b@example.test"], _message().as_bytes())
                client.sendmail("a@example.test", ["b@example.test"], _message().as_bytes())
        assert sink.stats.connections == 3
        assert sink.stats.messages == 6
        assert sink.messages() == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_it_requires_auth_and_refuses_a_wrong_password(tmp_path):
    with DevSink(tmp_path, port=free_port(), users={"alice": "s3cret"}) as sink:
        with smtplib.SMTP(sink.host, sink.port) as client:
            with pytest.raises(smtplib.SMTPSenderRefused):
                client.sendmail("a@example.test", ["b@example.test"], b"Subject: x\r\n\r\nx\r\n")
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                client.login("alice", "wrong")
            assert info.value.smtp_code == 535
        with smtplib.SMTP(sink.host, sink.port) as client:
            client.login("alice", "s3cret")
            client.sendmail("a@example.test", ["b@example.test"], _message().as_bytes())
        meta = json.loads(sink.messages()[0].with_suffix(".json").read_text())
        assert meta["authenticated"] is True and meta["auth_user"] == "alice"


def test_it_offers_starttls_with_a_certificate_a_client_can_verify(tmp_path):
    with DevSink(tmp_path, port=free_port(), users={"bob": "pw"}, starttls=True) as sink:
        context = ssl.create_default_context(cafile=str(sink.cert_path))
        with smtplib.SMTP("localhost", sink.port) as client:
            client.ehlo()
            # AUTH is not offered before TLS when STARTTLS is on.
            assert not client.has_extn("auth")
            client.starttls(context=context)
            client.login("bob", "pw")
            client.sendmail("a@example.test", ["b@example.test"], _message().as_bytes())
        meta = json.loads(sink.messages()[0].with_suffix(".json").read_text())
        assert meta["tls"] is True and meta["auth_user"] == "bob"
    assert (tmp_path / "sink-key.pem").stat().st_mode & 0o077 == 0


def test_it_reuses_a_valid_certificate(tmp_path):
    first = ensure_certificate(tmp_path)
    before = first[0].read_bytes()
    assert ensure_certificate(tmp_path)[0].read_bytes() == before


def test_it_reads_auth_passwords_from_the_environment():
    assert parse_auth("alice:SINK_PW", {"SINK_PW": "x"}) == ("alice", "x")
    with pytest.raises(ValueError, match="USER:PASSWORD_ENV"):
        parse_auth("alice", {})
    with pytest.raises(ValueError, match="SINK_PW .*not set"):
        parse_auth("alice:SINK_PW", {})


def test_the_command_explains_a_missing_password_variable(monkeypatch):
    monkeypatch.delenv("NO_SUCH_SINK_PW", raising=False)
    with pytest.raises(CommandError, match="NO_SUCH_SINK_PW"):
        call_command("devsink", "--port", str(free_port()), "--auth", "u:NO_SUCH_SINK_PW")


def test_the_command_explains_a_busy_port(tmp_path):
    with DevSink(tmp_path, port=free_port()) as busy:
        with pytest.raises(CommandError, match="cannot listen"):
            call_command("devsink", "--port", str(busy.port))
