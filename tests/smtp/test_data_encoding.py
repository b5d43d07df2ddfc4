"""The data encoder without sockets: CRLF normalisation and dot-stuffing, block by block."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.smtp.data import DataEncoder, iter_blocks, normalise


def encode(blocks: list[bytes], *, dot_stuff: bool) -> bytes:
    encoder = DataEncoder(dot_stuff=dot_stuff)
    out = b"".join(encoder.feed(b) for b in blocks) + encoder.finish()
    assert encoder.size == len(out)
    return out


def unstuff(wire: bytes) -> bytes:
    """What an RFC 5321 server stores: remove one leading dot from each line."""
    lines = wire.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    blocks, last = [], 0
    for p in [*points, len(data)]:
        blocks.append(data[last:p])
        last = p
    return blocks


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        (b"", b""),
        (b"a", b"a\r\n"),
        (b"a\nb\rc\r\nd", b"a\r\nb\r\nc\r\nd\r\n"),
        (b".\n", b"..\r\n"),
        (b"x\n.y\n..z\n", b"x\r\n..y\r\n...z\r\n"),
        (b"\r\r\n\n", b"\r\n\r\n\r\n"),
    ],
)
def test_it_normalises_and_dot_stuffs(raw, wire):
    assert encode([raw], dot_stuff=True) == wire


@pytest.mark.parametrize(
    "blocks",
    [
        [b"line\r", b"\n.dot\r\n"],  # CRLF split across blocks, then a dot line
        [b"line\r\n", b".dot\r\n"],  # the dot at the start of a block
        [b"line\r", b".dot"],  # bare CR at the end of a block, dot after
        [b"line\r", b"", b"\n", b".", b"x"],  # empty blocks in between
        [b"\r", b"\r", b"\n"],
    ],
)
def test_it_is_careful_at_block_boundaries(blocks):
    whole = b"".join(blocks)
    assert encode(blocks, dot_stuff=True) == encode([whole], dot_stuff=True)
    assert unstuff(encode(blocks, dot_stuff=True)) == normalise(whole)


def test_it_leaves_dots_alone_for_bdat():
    assert encode([b".a\n", b".b"], dot_stuff=False) == b".a\r\n.b\r\n"


@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_it_delivers_exactly_the_normalised_message_whatever_the_blocks(data, cuts):
    blocks = split(data, cuts)
    stuffed = encode(blocks, dot_stuff=True)
    # No bare CR or LF ever leaves, and the data cannot end early.
    assert stuffed.count(b"\r") == stuffed.count(b"\n") == stuffed.count(b"\r\n")
    assert b"\r\n.\r\n" not in b"\r\n" + stuffed
    assert unstuff(stuffed) == normalise(data)
    assert encode(blocks, dot_stuff=False) == normalise(data)


@given(
    data=st.lists(st.sampled_from([b".", b"\r", b"\n", b"a", b"\r\n", b"\xff"]), max_size=60),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_it_survives_dense_line_end_and_dot_soup(data, cuts):
    message = b"".join(data)
    blocks = split(message, cuts)
    assert unstuff(encode(blocks, dot_stuff=True)) == normalise(message)


def test_it_reads_files_and_bytes_in_blocks():
    data = bytes(range(256)) * 1000
    assert [len(b) for b in iter_blocks(data, 100_000)] == [100_000, 100_000, 56_000]
    assert b"".join(iter_blocks(io.BytesIO(data), 4096)) == data
