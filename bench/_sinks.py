"""Local SMTP sinks for the benchmark, each in its own process (so that a Python sink never
shares the benchmarked client's GIL), plus the delaying proxy in front of one.

- ``smtp-sink``: Postfix's C sink (PIPELINING, no CHUNKING). Several times faster than any
  Python sink, so it measures the client.
- ``aiosmtpd``: aiosmtpd's ``Sink`` handler (no PIPELINING, no CHUNKING).
- ``chunking``: a small asyncio sink in this file that offers PIPELINING and CHUNKING, so
  that BDAT can show; Postfix's smtp-sink and aiosmtpd offer no CHUNKING.

Run the chunking sink by hand with ``python bench/_sinks.py PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

LOOPBACK = "127.0.0.1"
HERE = Path(__file__).resolve().parent
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def free_port() -> int:
    """Bind to port 0, read the port the kernel chose, close it and return it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _wait_for_greeting(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start with status {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not greet on {LOOPBACK}:{port} within 10 s")


@contextlib.contextmanager
def _process(argv: list[str], port: int, what: str, **popen: object) -> Iterator[int]:
    process = subprocess.Popen(argv, **popen)  # type: ignore[call-overload]
    try:
        _wait_for_greeting(port, process, what)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def smtp_sink_available() -> bool:
    return Path(SMTP_SINK).is_file()


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    """Postfix's smtp-sink on a free loopback port; yields the port."""
    port = free_port()
    with _process(
        [SMTP_SINK, "-u", "nobody", f"{LOOPBACK}:{port}", "256"],
        port,
        "smtp-sink",
        stdout=subprocess.DEVNULL,
    ) as ready:
        yield ready


@contextlib.contextmanager
def aiosmtpd_sink() -> Iterator[int]:
    """aiosmtpd with its Sink handler (discards every message); yields the port."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "aiosmtpd",
        "-n",
        "-c",
        "aiosmtpd.handlers.Sink",
        "-l",
        f"{LOOPBACK}:{port}",
    ]
    with _process(argv, port, "the aiosmtpd sink") as ready:
        yield ready


@contextlib.contextmanager
def chunking_sink() -> Iterator[int]:
    """The PIPELINING + CHUNKING sink below; yields the port."""
    port = free_port()
    with _process([sys.executable, __file__, str(port)], port, "the chunking sink") as ready:
        yield ready


class DelayProxy:
    """``bench/_proxy.py`` in its own process in front of ``target_port`` (``delay`` 0: just
    a counter). A thread reads its per-connection lines, so ``closed`` and ``settle`` count
    the connections opened through it."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.port = free_port()
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "_proxy.py"), str(self.port), str(target_port), str(delay)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the delay proxy did not start")
        self._stats: queue.Queue[dict[str, int]] = queue.Queue()
        self._closed = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:  # type: ignore[union-attr]
            with self._lock:
                self._closed += 1
            self._stats.put(json.loads(line))

    def connection_stats(self) -> dict[str, int]:
        """The counters of the next connection to close (blocks until it has closed)."""
        return self._stats.get()

    @property
    def closed(self) -> int:
        """Connections closed so far."""
        with self._lock:
            return self._closed

    def settle(self, seconds: float = 1.0) -> int:
        """The count once no connection has closed for ``seconds``."""
        last, since = self.closed, time.monotonic()
        while time.monotonic() - since < seconds:
            time.sleep(0.1)
            if self.closed != last:
                last, since = self.closed, time.monotonic()
        return last

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=5)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the chunking sink ---------------------------------------------------------------------

_EHLO = (
    b"250-chunking-sink\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 104857600\r\n"
)


class _ChunkingSink(asyncio.Protocol):
    """Accepts everything and keeps nothing. It reads the input as a buffer and answers each
    complete command in order, so pipelined groups get all their replies in one write."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = bytearray()
        self.mode = "command"  # or "data" (until CRLF.CRLF) or "bdat" (counting bytes)
        self.remaining = 0
        self.last_chunk = False
        transport.write(b"220 chunking-sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = bytearray()
        while self._step(out):
            pass
        if out:
            self.transport.write(bytes(out))  # type: ignore[attr-defined]

    def _step(self, out: bytearray) -> bool:
        if self.mode == "bdat":
            taken = min(self.remaining, len(self.buffer))
            del self.buffer[:taken]
            self.remaining -= taken
            if self.remaining:
                return False
            self.mode = "command"
            out += b"250 2.0.0 Ok: queued\r\n" if self.last_chunk else b"250 2.0.0 Ok\r\n"
            return True
        if self.mode == "data":
            end = self.buffer.find(b"\r\n.\r\n")
            if end < 0:
                # keep the last 4 bytes: the terminator may straddle two reads
                del self.buffer[: max(0, len(self.buffer) - 4)]
                return False
            del self.buffer[: end + 5]
            self.mode = "command"
            out += b"250 2.0.0 Ok: queued\r\n"
            return True
        end = self.buffer.find(b"\r\n")
        if end < 0:
            return False
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        verb = line[:4].upper()
        if verb == b"EHLO":
            out += _EHLO
        elif verb == b"BDAT":
            parts = line.split()
            self.remaining = int(parts[1])
            self.last_chunk = len(parts) > 2 and parts[2].upper() == b"LAST"
            self.mode = "bdat"
        elif verb == b"DATA":
            # the buffer keeps a CRLF in front so that an empty body still ends the data
            self.buffer[0:0] = b"\r\n"
            self.mode = "data"
            out += b"354 End data with <CR><LF>.<CR><LF>\r\n"
        elif verb == b"QUIT":
            out += b"221 2.0.0 Bye\r\n"
            self.transport.write(bytes(out))  # type: ignore[attr-defined]
            out.clear()
            self.transport.close()
            return False
        else:  # HELO, MAIL, RCPT, RSET, NOOP: all fine
            out += b"250 2.0.0 Ok\r\n"
        return True


async def _serve_chunking(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_ChunkingSink, LOOPBACK, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_chunking(int(sys.argv[1])))
