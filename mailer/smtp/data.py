"""Message data encoding for DATA and BDAT: pure, incremental, block by block.

Every bare CR and bare LF becomes CRLF — no bare LF ever leaves the client, which closes the
"SMTP smuggling" class of bugs — and a message that does not end in CRLF gets one. For DATA
(RFC 5321 section 4.5.2) a line starting with "." gets a second ".". Both hold across block
boundaries: a CR at the end of one block and an LF at the start of the next are one line end,
and a "." at the start of a block after a line end is still at the start of a line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["BLOCK_SIZE", "DataEncoder", "iter_blocks", "normalise"]

# Large enough that typical messages (and their envelope) go out in one write, small
# enough that a 25 MB message is never held whole.
BLOCK_SIZE = 256 * 1024

_LINE_END = re.compile(rb"\r\n|\r|\n")


def _normalise_block(block: bytes) -> bytes:
    """CRLF-normalise a block that does not end in a lone CR."""
    cr = block.count(b"\r")
    if not cr:
        return block.replace(b"\n", b"\r\n")
    # Fast path: already clean CRLF text (the common case for a frozen .eml).
    if cr == block.count(b"\n") == block.count(b"\r\n"):
        return block
    return _LINE_END.sub(b"\r\n", block)


class DataEncoder:
    """Feed raw blocks, get wire-ready blocks; ``finish()`` returns the tail.

    ``finish()`` does not include DATA's terminating ``.CRLF``; the client adds it.
    """

    def __init__(self, *, dot_stuff: bool) -> None:
        self.dot_stuff = dot_stuff
        self._pending_cr = False
        self._line_start = True  # at the start of a line (and of the message)
        self._empty = True
        self.size = 0  # bytes produced so far

    def feed(self, block: bytes) -> bytes:
        if self._pending_cr:
            block = b"\r" + block
            self._pending_cr = False
        if block.endswith(b"\r"):
            # It may be the first half of a CRLF split across blocks: decide next time.
            block = block[:-1]
            self._pending_cr = True
        if not block:
            return b""
        out = _normalise_block(block)
        if self.dot_stuff:
            if b"\n." in out:
                out = out.replace(b"\n.", b"\n..")
            if self._line_start and out[:1] == b".":
                out = b"." + out
        self._line_start = out.endswith(b"\n")
        self._empty = False
        self.size += len(out)
        return out

    def finish(self) -> bytes:
        """Return what is still owed: the held-back CR, or a final CRLF if missing."""
        tail = b""
        if self._pending_cr or (not self._empty and not self._line_start):
            tail = b"\r\n"
        self._pending_cr = False
        self._line_start = True
        self.size += len(tail)
        return tail


def normalise(message: bytes) -> bytes:
    """The message exactly as the server should store it (reference for tests and sizes)."""
    out = _LINE_END.sub(b"\r\n", message)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def iter_blocks(message: bytes | BinaryIO, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Yield the message in blocks without copying it whole (bytes) or reading it whole (file)."""
    if isinstance(message, bytes | bytearray | memoryview):
        if isinstance(message, bytes) and len(message) <= block_size:
            if message:
                yield message  # the common small message: no copy at all
            return
        view = memoryview(message).cast("B")
        for start in range(0, len(view), block_size):
            yield bytes(view[start : start + block_size])
        return
    read = message.read
    while True:
        block = read(block_size)
        if not block:
            return
        yield bytes(block)
