"""Heavier fuzzing of the two parts that face hostile bytes: the reply parser and the data
encoder. The property tests beside this file check the shape of the answer with the
default 100 examples; these add exact reference models and run thousands of examples
(about 30-60 s in all), so that rare interleavings of dots, CRs, LFs, block boundaries,
continuation lines and enhanced codes are actually met. ``MAILROOM_FUZZ_SCALE`` multiplies
the example counts (0.1 for a quick local run, 10 for a soak)."""

from __future__ import annotations

import io
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.smtp import errors
from mailer.smtp.data import BLOCK_SIZE, DataEncoder, iter_blocks
from mailer.smtp.replies import MAX_LINE_LENGTH, MAX_REPLY_SIZE, read_reply

pytestmark = pytest.mark.slow

SCALE = float(os.environ.get("MAILROOM_FUZZ_SCALE", "1"))


def fuzz(examples: int):
    return settings(max_examples=max(10, int(examples * SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- the reply parser ------------------------------------------------------------------

TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF,
                             blacklist_categories=("Cs",), blacklist_characters="\x7f"),
               max_size=120)


@st.composite
def replies(draw):
    """A well-formed reply: code, optional enhanced code of the same class, 1-20 lines."""
    code = draw(st.integers(200, 599))
    enhanced = draw(st.one_of(st.none(), st.builds(
        lambda a, b: f"{str(code)[0]}.{a}.{b}", st.integers(0, 999), st.integers(0, 999))))
    texts = draw(st.lists(TEXT, min_size=1, max_size=20))
    if code // 100 == 3:
        enhanced = None  # RFC 3463 classes are 2, 4 and 5 only
    if enhanced is not None:
        # A text that itself starts like an enhanced code would be ambiguous.
        texts = [t if not re.match(r"[245]\.\d", t) else "x" + t for t in texts]
    return code, enhanced, texts


def wire(code: int, enhanced: str | None, texts: list[str]) -> bytes:
    out = []
    for i, text in enumerate(texts):
        sep = " " if i == len(texts) - 1 else "-"
        body = f"{enhanced} {text}" if enhanced is not None else text
        out.append(f"{code}{sep}{body}\r\n".encode())
    return b"".join(out)


class Stream(io.BytesIO):
    def readline(self, limit: int = -1) -> bytes:  # type: ignore[override]
        return super().readline(limit)


@fuzz(1000)
@given(replies(), st.binary(max_size=40))
def test_it_parses_every_well_formed_reply_exactly_and_reads_no_further(reply, after):
    code, enhanced, texts = reply
    raw = wire(code, enhanced, texts)
    stream = Stream(raw + after)
    parsed = read_reply(stream.readline)
    assert parsed.code == code
    assert parsed.enhanced == enhanced
    # After an enhanced code, the spaces that separate it from the text are not text.
    assert parsed.text == "\n".join(t.lstrip(" ") if enhanced else t for t in texts)
    # Nothing of what follows (the next pipelined reply) was consumed.
    assert stream.tell() == len(raw)


MUTATIONS = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
    [b"\r", b"\n", b"\r\n", b"\x00", b"-", b" ", b"\xff", b"9", b".", b"\x1b[2J", b""])),
    max_size=6)


@fuzz(1500)
@given(replies(), MUTATIONS, st.integers(0, 10_000))
def test_it_answers_any_damaged_reply_with_a_reply_or_a_protocol_error(reply, mutations, cut):
    raw = bytearray(wire(*reply))
    for where, what in mutations:
        where %= len(raw) + 1
        raw[where:where + (1 if what else 0)] = what  # replace (or delete) one byte
    raw = bytes(raw[: cut % (len(raw) + 1) or len(raw)])
    stream = Stream(raw)
    try:
        parsed = read_reply(stream.readline)
    except (errors.SMTPProtocolError, errors.SMTPServerDisconnected) as exc:
        assert str(exc)
    else:
        assert 200 <= parsed.code <= 599
        # No control character survives into text that transcripts and pages show.
        for text in (parsed.text.replace("\n", ""), *parsed.lines):
            assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", text), text
    assert stream.tell() <= MAX_REPLY_SIZE + MAX_LINE_LENGTH + 1


# --- the data encoder ------------------------------------------------------------------


def reference(data: bytes, *, dot_stuff: bool) -> bytes:
    """RFC 5321 section 4.5.2 by the book: every CR, LF or CRLF becomes CRLF, the data ends
    with CRLF, and (for DATA) a line starting with a dot gets one more."""
    if not data:
        return b""
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    if dot_stuff:
        text = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln
                            for ln in text.split(b"\r\n"))
    return text


SOUP = st.lists(st.one_of(
    st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"\n.", b"\r.", b".\r\n", b"\xff\xfe"]),
    st.binary(max_size=50),
    st.builds(lambda n: b"x" * n, st.integers(0, 3 * BLOCK_SIZE)),
), max_size=40).map(b"".join)


@fuzz(1500)
@given(SOUP, st.lists(st.integers(0, 4 * BLOCK_SIZE), max_size=16), st.booleans())
def test_the_encoder_matches_the_rfc_whatever_the_block_boundaries(data, cuts, dot_stuff):
    points = sorted({c % (len(data) + 1) for c in cuts})
    blocks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    encoder = DataEncoder(dot_stuff=dot_stuff)
    out = b"".join(encoder.feed(b) for b in blocks) + encoder.finish()
    assert out == reference(data, dot_stuff=dot_stuff)
    assert encoder.size == len(out)
    if dot_stuff:  # the message can never end early
        assert b"\r\n.\r\n" not in b"\r\n" + out


@fuzz(600)
@given(SOUP, st.integers(1, 3 * BLOCK_SIZE))
def test_the_encoder_matches_the_rfc_when_streamed_from_a_file(data, block):
    encoder = DataEncoder(dot_stuff=True)
    out = b"".join(encoder.feed(b) for b in iter_blocks(io.BytesIO(data), block))
    assert out + encoder.finish() == reference(data, dot_stuff=True)
