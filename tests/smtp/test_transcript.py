"""The transcript shows the dialogue, never a secret, and stays bounded."""

from __future__ import annotations

import base64

import pytest

from mailer.smtp import SMTPClient, errors

USER, PASSWORD = "alice@example.org", "Sup3r-Secret!pw"
MSG = b"Subject: t\r\n\r\nHello.\r\n"


def secret_forms() -> list[str]:
    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    return [
        PASSWORD,
        b64(PASSWORD),
        b64(f"\0{USER}\0{PASSWORD}"),
        b64(f"user={USER}\x01auth=Bearer {PASSWORD}\x01\x01"),
        b64(PASSWORD)[:12],
    ]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"])
@pytest.mark.parametrize("password", [PASSWORD, "wrong-" + PASSWORD])
def test_it_never_contains_the_password_or_its_base64(smtp_server_factory, mechanism, password):
    server = smtp_server_factory(security="starttls", accounts={USER: PASSWORD})
    client = SMTPClient(
        **server.client_kwargs(
            username=USER, secret=password, auth_mechanism=mechanism, transcript=True
        )
    )
    try:
        client.connect()
        client.send(USER, ["b@example.org"], MSG)
        client.quit()
    except errors.SMTPAuthenticationError:
        pass
    text = "\n".join(client.transcript)
    assert f"C: AUTH {mechanism}" in text
    for form in secret_forms():
        assert form not in text
    auth_at = next(i for i, line in enumerate(client.transcript) if line.startswith("C: AUTH"))
    for line in client.transcript[auth_at + 1 :]:
        if line.startswith("C: ") and not line.startswith(("C: MAIL", "C: RCPT", "C: DATA")):
            assert line in ("C: [redacted]", "C: .", "C: QUIT") or line.startswith("C: <")


def test_it_records_both_sides_and_summarises_the_data(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs(transcript=True)) as client:
        client.send("a@example.org", ["b@example.org"], MSG)
    assert client.transcript[0].startswith("S: 220 ")
    assert "C: MAIL FROM:<a@example.org> SIZE=22" in client.transcript
    assert f"C: <{len(MSG)} bytes of message data>" in client.transcript
    assert b"Hello" not in "\n".join(client.transcript).encode()


def test_it_stays_within_its_limit(smtp_server):
    client = SMTPClient(**smtp_server.client_kwargs(transcript=True, transcript_limit=600))
    with client:
        for _ in range(20):
            client.send("a@example.org", ["b@example.org"], MSG)
    assert client.transcript[-1] == "[transcript truncated]"
    assert sum(len(line) + 1 for line in client.transcript[:-1]) <= 600


def test_it_is_empty_unless_asked_for(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs()) as client:
        client.send("a@example.org", ["b@example.org"], MSG)
    assert client.transcript == []
