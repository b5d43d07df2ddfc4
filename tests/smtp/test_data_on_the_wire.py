"""Whatever bytes go in — bytes or a file read in arbitrary blocks — the server receives
exactly the CRLF-normalised message (dot-unstuffed for DATA, as-is for BDAT)."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.smtp import SMTPClient
from mailer.smtp.data import normalise
from tests.smtp_servers import MiniSMTP

SOUP = st.lists(
    st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"\r\n.\r\n", b"a", b"\xe9", b".."]), max_size=80
).map(b"".join)


class Dribble(io.RawIOBase):
    """A file whose reads return at most ``step`` bytes: block boundaries everywhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        chunk = self._data[self._pos : self._pos + min(self._step, len(buffer))]
        self._pos += len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def body(data: bytes) -> bytes:
    # A header so that servers see a message; aiosmtpd needs at least one line.
    return b"Subject: soup\r\n\r\n" + data


@pytest.fixture
def data_client(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs()) as client:
        yield smtp_server, client


@pytest.fixture
def bdat_client(scripted_server_factory):
    session = MiniSMTP(extensions=("PIPELINING", "CHUNKING", "8BITMIME"))
    server = scripted_server_factory(session)
    with SMTPClient(server.host, server.port, security="none") as client:
        yield session, client


@given(data=st.one_of(st.binary(max_size=300), SOUP), step=st.integers(1, 50))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_it_delivers_exactly_the_normalised_message_with_data(data_client, data, step):
    server, client = data_client
    message = body(data)
    client.send("a@example.org", ["b@example.org"], Dribble(message, step), body_8bit=True)
    assert server.messages[-1].content == normalise(message)


@given(data=st.one_of(st.binary(max_size=300), SOUP), step=st.integers(1, 50))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_it_delivers_exactly_the_normalised_message_with_bdat(bdat_client, data, step):
    session, client = bdat_client
    message = body(data)
    client.send("a@example.org", ["b@example.org"], Dribble(message, step), body_8bit=True)
    assert session.messages[-1].content == normalise(message)
    assert session.messages[-1].via == "BDAT"


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_it_takes_any_bytes_like_message(data_client, kind):
    server, client = data_client
    message = b"Subject: kinds\n\n" + "é\n".encode() * 200_000  # over one block, 8-bit
    client.send("a@example.org", ["b@example.org"], kind(message))
    received = server.messages[-1]
    assert received.content == normalise(message)
    assert "BODY=8BITMIME" in received.mail_options
