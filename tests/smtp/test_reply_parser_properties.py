"""Property tests: whatever a server sends, the reply parser returns a reply or raises a
protocol/disconnect error, reads a bounded amount, and never hangs."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from mailer.smtp import errors
from mailer.smtp.replies import MAX_LINE_LENGTH, MAX_REPLY_SIZE, read_reply

LINES = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda code, sep, text, end: code + sep + text + end,
        st.sampled_from([b"250", b"451", b"550", b"354", b"2x0", b"999", b"25"]),
        st.sampled_from([b" ", b"-", b"", b"_"]),
        st.binary(max_size=40),
        st.sampled_from([b"\r\n", b"\n", b"\r", b""]),
    ),
)


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def readline(self, limit: int = -1) -> bytes:  # type: ignore[override]
        line = super().readline(limit)
        self.consumed += len(line)
        return line


@given(st.lists(LINES, max_size=30))
def test_it_returns_a_reply_or_raises_a_protocol_error(lines):
    stream = CountingStream(b"".join(lines))
    try:
        reply = read_reply(stream.readline)
    except (errors.SMTPProtocolError, errors.SMTPServerDisconnected) as exc:
        assert exc.phase == "connect"
    else:
        assert 200 <= reply.code <= 599
        assert len(reply.lines) >= 1
        assert "\r" not in reply.text and all("\n" not in line for line in reply.lines)
    assert stream.consumed <= MAX_REPLY_SIZE + MAX_LINE_LENGTH + 1


@given(st.binary(min_size=1, max_size=300), st.integers(min_value=1, max_value=100_000))
def test_it_reads_a_bounded_amount_of_an_endless_reply(unit, repeat):
    line = b"250-" + unit.replace(b"\n", b"") + b"\r\n"
    stream = CountingStream(line * repeat + b"250 end\r\n")
    try:
        read_reply(stream.readline)
    except (errors.SMTPProtocolError, errors.SMTPServerDisconnected):
        pass
    assert stream.consumed <= MAX_REPLY_SIZE + MAX_LINE_LENGTH + 1
