"""SIZE (RFC 1870): declared in MAIL; an oversize message is refused before anything is sent."""

from __future__ import annotations

import io

import pytest

from mailer.smtp import SMTPClient, errors


@pytest.mark.parametrize("as_file", [False, True])
def test_it_refuses_an_oversize_message_before_sending_it(smtp_server_factory, as_file):
    server = smtp_server_factory(data_size_limit=1000)
    message = b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n"
    with SMTPClient(**server.client_kwargs(), transcript=True) as client:
        assert client.capabilities.size == 1000
        with pytest.raises(errors.SMTPMessageTooLarge) as caught:
            client.send(
                "a@example.org", ["b@example.org"], io.BytesIO(message) if as_file else message
            )
        assert client.noop()
    error = caught.value
    assert error.limit == 1000 and not error.transient and error.phase == "mail"
    assert "1000 bytes" in str(error) and str(len(message)) in str(error)
    assert not any(line.startswith("C: MAIL") for line in client.transcript)


def test_it_declares_the_size_in_mail(smtp_server):
    message = b"Subject: s\r\n\r\nx\r\n"
    with SMTPClient(**smtp_server.client_kwargs()) as client:
        client.send("a@example.org", ["b@example.org"], message)
    assert smtp_server.messages[0].mail_options == [f"SIZE={len(message)}"]


def test_it_uses_the_size_hint_for_a_stream_it_cannot_measure(smtp_server_factory):
    class Stream(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, buffer):
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    server = smtp_server_factory(data_size_limit=1000)
    with SMTPClient(**server.client_kwargs()) as client:
        with pytest.raises(errors.SMTPMessageTooLarge):
            client.send("a@example.org", ["b@example.org"], Stream(b"x" * 10), size_hint=5000)
        client.send("a@example.org", ["b@example.org"], Stream(b"hello\r\n"), size_hint=7)
    assert server.messages[0].mail_options == ["SIZE=7", "BODY=8BITMIME"]
