"""A loopback IMAP proxy for the fault suite (``bench/faults.py``) that can break a session
at the exact moment a scenario needs.

It sits between the workers and a private Dovecot, with implicit TLS on both sides (it
terminates TLS so that it can read the server's answers: the workers verify its
certificate with the account's CA, it verifies Dovecot's), and forwards both ways. Two
faults can be armed, each for one occurrence of a kind of answer from the server —
``append`` (the tagged ``OK [APPENDUID ...]`` of RFC 4315: the copy is in the mailbox),
``fetch`` (a ``* n FETCH (... {size}`` answer carrying a literal) or ``body`` (one carrying
a whole message, ``BODY[] {size}``):

* :meth:`ImapProxy.hold`: that chunk is *held* — the server has done its part, the worker
  has not heard so — and the client's port is put on :attr:`ImapProxy.held`, so that the
  lab can SIGKILL the worker owning that connection inside the window. The chunk goes on
  after :meth:`release`, when the client goes away, or after ``hold`` seconds at most.
* :meth:`ImapProxy.cut`: only part of that answer is forwarded and both connections are
  closed: a server dropping in the middle of a FETCH.

``skip`` lets that many answers of the kind pass first. One more kind, ``body-request``,
is a client's ``UID FETCH ... BODY.PEEK[]`` command: held, it holds the server's first
chunk of the answer to it (a poll that has recorded what it read so far and asks for more).

It runs an asyncio loop in a daemon thread of the lab's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import ssl
import threading

LOOPBACK = "127.0.0.1"
APPENDUID = re.compile(rb"^\S+ OK \[APPENDUID ", re.I)
FETCH_LITERAL = re.compile(rb"\* \d+ FETCH \([^\r\n]*\{(\d+)\}\r\n", re.I)
BODY_LITERAL = re.compile(rb"\* \d+ FETCH \([^\r\n]*BODY\[\] \{(\d+)\}\r\n", re.I)
BODY_REQUEST = re.compile(rb"^\S+ UID FETCH [^\r\n]*BODY\.PEEK\[\]", re.I)
KINDS = ("append", "fetch", "body", "body-request")
_KEEP = 512  # bytes of an unfinished line kept for matching (answers we look for are short)


class _Connection:
    def __init__(self, client_port: int) -> None:
        self.client_port = client_port
        self.release = asyncio.Event()
        self.hold_answer = False  # hold the server's next chunk (a held body-request)


class ImapProxy:
    def __init__(self, upstream_port: int, upstream_ca_pem: str,
                 server_context: ssl.SSLContext, *, hold: float = 5.0) -> None:
        self.upstream_port = upstream_port
        self._upstream_ctx = ssl.create_default_context(cadata=upstream_ca_pem)
        self._server_ctx = server_context
        self.hold_seconds = hold
        self.port = 0
        self.seen = dict.fromkeys(KINDS, 0)  # answers of each kind that passed
        self.cuts = 0  # connections cut mid-FETCH
        self.held: queue.Queue[int] = queue.Queue()  # client ports whose answer is held
        self._armed: list[tuple[str, str, int]] = []  # (what, kind, answers still to pass)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._conns: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- control, from the lab's threads
    def start(self) -> ImapProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, LOOPBACK, 0, ssl=self._server_ctx),
            self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def hold(self, kind: str, skip: int = 0) -> None:
        with self._lock:
            self._armed.append(("hold", kind, skip))

    def cut(self, kind: str, skip: int = 0) -> None:
        with self._lock:
            self._armed.append(("cut", kind, skip))

    def disarm(self) -> None:
        with self._lock:
            self._armed.clear()

    def release(self) -> None:
        """Let every held answer go on."""
        def go() -> None:
            for conn in self._conns:
                conn.release.set()

        self._loop.call_soon_threadsafe(go)

    def _passing(self, kind: str) -> str | None:
        """One answer of ``kind`` passes: the fault armed for it, if its turn has come."""
        with self._lock:
            self.seen[kind] += 1
            for i, (what, armed, skip) in enumerate(self._armed):
                if armed != kind:
                    continue
                if skip:
                    self._armed[i] = (what, armed, skip - 1)
                    continue
                del self._armed[i]
                return what
        return None

    # -- the proxy itself, in the loop's thread
    async def _serve(self, c_reader: asyncio.StreamReader,
                     c_writer: asyncio.StreamWriter) -> None:
        conn = _Connection(c_writer.get_extra_info("peername")[1])
        try:
            s_reader, s_writer = await asyncio.open_connection(
                LOOPBACK, self.upstream_port, ssl=self._upstream_ctx,
                server_hostname=LOOPBACK)
        except OSError:
            c_writer.close()
            return
        self._conns.add(conn)
        up = asyncio.create_task(self._up(c_reader, s_writer, conn))
        down = asyncio.create_task(self._down(s_reader, c_writer, conn))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for w in (c_writer, s_writer):
            w.close()
        self._conns.discard(conn)

    async def _up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  conn: _Connection) -> None:
        # AttributeError: asyncio's SSL transport once its peer is gone (CPython 3.11).
        pending = b""
        with contextlib.suppress(OSError, ssl.SSLError, AttributeError):
            while data := await reader.read(64 * 1024):
                lines = (pending + data).split(b"\r\n")
                pending = lines.pop()[-_KEEP:]
                if any(BODY_REQUEST.match(line) for line in lines) and self._passing(
                        "body-request") == "hold":
                    conn.hold_answer = True  # before the command reaches the server
                writer.write(data)
                await writer.drain()
        conn.release.set()  # the client went away (killed): nothing to hold for

    async def _down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    conn: _Connection) -> None:
        pending = b""  # the unfinished last line, for matching
        with contextlib.suppress(OSError, ssl.SSLError, AttributeError):
            while data := await reader.read(64 * 1024):
                lines = (pending + data).split(b"\r\n")
                pending = lines.pop()[-_KEEP:]
                faults: list[tuple[str | None, re.Match | None]] = []
                if conn.hold_answer:
                    conn.hold_answer = False
                    faults.append(("hold", None))
                if any(APPENDUID.match(line) for line in lines):
                    faults.append((self._passing("append"), None))
                fetch = FETCH_LITERAL.search(data)
                if fetch is not None:
                    faults.append((self._passing("fetch"), fetch))
                    body = BODY_LITERAL.search(data)
                    if body is not None:
                        faults.append((self._passing("body"), body))
                for what, match in faults:
                    if what == "hold":
                        self.held.put(conn.client_port)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(conn.release.wait(), self.hold_seconds)
                    elif what == "cut" and match is not None:
                        # Forward the answer's first line and part of its literal, then go.
                        self.cuts += 1
                        part = max(1, min(int(match.group(1)), len(data) - match.end()) // 2)
                        writer.write(data[:match.end() + part])
                        await writer.drain()
                        return
                writer.write(data)
                await writer.drain()
