"""Hostile SMTP servers, and the counting sinks that judge them, for the fault suite
(``bench/faults.py``) and the client tests. Built on ``tests.smtp_servers``: the
misbehaving ones are sessions of its raw ``ScriptedServer``, the good ones are its aiosmtpd
servers with a ``RecordingHandler`` that can also limit recipients or go away.

* ``HostileServer(behaviour, upstream=...)`` misbehaves in one way (see ``BEHAVIOURS``)
  until ``heal()``; from then on it relays each new connection byte for byte to the
  upstream good server, so the mail it held back can still be delivered and counted there.
* ``start_sink(...)`` starts a good aiosmtpd server: plain or STARTTLS, optionally with a
  recipient limit per transaction (``452 4.5.3``) or "going away between messages" (the
  connection is dropped without a reply at the first command after a delivered message,
  like a server restarted between two messages of a reused connection).
* ``deliveries(*sinks)`` counts what the good servers took: (Message-ID, recipient) pairs.

Everything listens on 127.0.0.1 and runs in threads of the calling process, so Celery
workers in other processes can be pointed at it.
"""

from __future__ import annotations

import collections
import socket
import threading
from email.parser import BytesHeaderParser

from tests.proxies import pipe
from tests.smtp_servers import (
    RecordingHandler,
    RunningServer,
    ScriptedConnection,
    ScriptedServer,
    TLSCertificates,
    start_smtp_server,
)

# One TLS "handshake_failure" alert record (RFC 8446, section 6): what a server whose TLS
# set-up is broken answers to a ClientHello.
TLS_HANDSHAKE_FAILURE_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"

BEHAVIOURS = {
    "refuse": "nothing listens on the port: every connection is refused",
    "greeting-421": "answers 421 at the greeting and closes",
    "drop-in-data": "takes the envelope, then resets the connection in the middle of DATA "
    "(only a message larger than the socket buffers absorb, ~4.5 MB on Linux loopback, is "
    "surely cut before its end; a smaller one may be all out already, and its outcome unknown)",
    "silent": "accepts the connection and never says a word (the client must time out)",
    "silent-after-data": "takes the whole message, then hangs up without the final reply",
    "tls-fail": "offers STARTTLS, says 220, then fails the TLS handshake",
    "garbage": "answers with something that is not SMTP (an SSH banner)",
    "endless": "sends an endless multi-line greeting",
}


def message_id_of(data: bytes) -> str:
    """The Message-ID header of a raw message, stripped; "" when it has none."""
    return str(BytesHeaderParser().parsebytes(data).get("Message-ID", "")).strip()


def deliveries(*sinks: RunningServer) -> collections.Counter[tuple[str, str]]:
    """How often each (Message-ID, recipient) pair reached one of the good servers."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for sink in sinks:
        for message in list(sink.messages):
            mid = message_id_of(message.content)
            for rcpt in message.rcpt_tos:
                counts[(mid, rcpt.lower())] += 1
    return counts


class LimitingHandler(RecordingHandler):
    """A RecordingHandler with a recipient limit per transaction and/or that goes away
    after each delivered message."""

    def __init__(self, *, recipient_limit: int | None = None, go_away: bool = False) -> None:
        super().__init__()
        self.recipient_limit = recipient_limit
        self.go_away = go_away

    def _gone(self, server, session) -> bool:
        if self.go_away and getattr(session, "delivered_one", False):
            server.transport.abort()
            return True
        return False

    async def handle_NOOP(self, server, session, envelope, arg):  # noqa: N802
        return "421 gone" if self._gone(server, session) else "250 2.0.0 OK"

    async def handle_RSET(self, server, session, envelope):  # noqa: N802
        return "421 gone" if self._gone(server, session) else "250 2.0.0 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if self._gone(server, session):
            return "421 gone"  # never reaches the wire: the transport is gone
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.recipient_limit is not None and len(envelope.rcpt_tos) >= self.recipient_limit:
            return "452 4.5.3 Too many recipients, send the rest in another transaction"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        session.delivered_one = True
        return await super().handle_DATA(server, session, envelope)


def start_sink(
    *,
    certificates: TLSCertificates | None = None,
    recipient_limit: int | None = None,
    go_away: bool = False,
) -> RunningServer:
    """A good aiosmtpd server (STARTTLS required when ``certificates`` are given)."""
    handler = LimitingHandler(recipient_limit=recipient_limit, go_away=go_away)
    if certificates is None:
        return start_smtp_server(handler=handler)
    return start_smtp_server(security="starttls", certificates=certificates,
                             require_starttls=True, handler=handler)


class HostileServer:
    """A loopback server that misbehaves as ``behaviour`` until healed, then relays every
    new connection to ``upstream`` (host, port). Connections already open keep misbehaving.
    """

    def __init__(self, behaviour: str, *, upstream: tuple[str, int] | None = None,
                 data_bytes_before_drop: int = 64) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {sorted(BEHAVIOURS)}")
        self.behaviour = behaviour
        self.upstream = upstream
        self.data_bytes_before_drop = data_bytes_before_drop
        self.healed = False
        self.hostile_connections = 0
        self._lock = threading.Lock()
        # Long socket timeout: "silent" must outlast the client's own timeout.
        self._server = ScriptedServer(self._session, timeout=600.0)
        self._listening = False

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> tuple[str, int]:
        return (self._server.host, self._server.port)

    def start(self) -> HostileServer:
        # "refuse": the port is bound but not listening, so the kernel refuses connections.
        if self.behaviour != "refuse":
            self._listen()
        return self

    def _listen(self) -> None:
        if not self._listening:
            self._server.start()
            self._listening = True

    def heal(self) -> None:
        """From now on, relay new connections to the upstream good server."""
        if self.upstream is None:
            raise RuntimeError("heal() needs an upstream server to relay to")
        self.healed = True
        self._listen()

    def stop(self) -> None:
        for conn in list(self._server.connections):
            try:  # wakes a thread blocked in recv (close() alone does not)
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.stop()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _session(self, conn: ScriptedConnection) -> None:
        if self.healed:
            self._relay(conn)
            return
        with self._lock:
            self.hostile_connections += 1
        getattr(self, "_b_" + self.behaviour.replace("-", "_"))(conn)

    # --- healed -----------------------------------------------------------------------
    def _relay(self, conn: ScriptedConnection) -> None:
        up = socket.create_connection(self.upstream, timeout=600.0)
        back = threading.Thread(target=pipe, args=(up, conn.sock), daemon=True)
        back.start()
        pipe(conn.sock, up)
        back.join(5)
        up.close()

    # --- hostile ----------------------------------------------------------------------
    @staticmethod
    def _until(conn: ScriptedConnection, *, starttls: bool = False) -> str:
        """A minimal SMTP dialogue up to DATA (or STARTTLS); returns the verb that ended it."""
        conn.reply("220 hostile.mailroom.test ESMTP")
        ext = ["hostile.mailroom.test", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
               "SIZE 52428800"] + (["STARTTLS"] if starttls else [])
        while line := conn.readline():
            verb = line[:8].upper().split()[0] if line.strip() else b""
            if verb == b"EHLO":
                conn.reply(*[f"250-{e}" for e in ext[:-1]], f"250 {ext[-1]}")
            elif verb == b"DATA":
                conn.reply("354 End data with <CR><LF>.<CR><LF>")
                return "DATA"
            elif verb == b"STARTTLS" and starttls:
                conn.reply("220 2.0.0 Ready to start TLS")
                return "STARTTLS"
            elif verb == b"QUIT":
                conn.reply("221 2.0.0 Bye")
                return "QUIT"
            else:
                conn.reply("250 2.0.0 OK")
        return "EOF"

    def _b_greeting_421(self, conn: ScriptedConnection) -> None:
        conn.reply("421 4.3.2 Service not available, closing transmission channel")

    def _b_drop_in_data(self, conn: ScriptedConnection) -> None:
        if self._until(conn) == "DATA":
            conn.read_exact(self.data_bytes_before_drop)
            # A reset, not a polite FIN: the client's next write fails at once instead of
            # vanishing into the socket buffers.
            conn.close(reset=True)

    def _b_silent(self, conn: ScriptedConnection) -> None:
        while conn.recv_some():  # say nothing; wait for the client to give up
            pass

    def _b_silent_after_data(self, conn: ScriptedConnection) -> None:
        if self._until(conn) == "DATA":
            while conn.readline() not in (b".\r\n", b""):
                pass

    def _b_tls_fail(self, conn: ScriptedConnection) -> None:
        if self._until(conn, starttls=True) == "STARTTLS":
            conn.recv_some()  # the ClientHello
            conn.send(TLS_HANDSHAKE_FAILURE_ALERT)

    def _b_garbage(self, conn: ScriptedConnection) -> None:
        conn.reply("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
        while conn.recv_some():
            conn.send(b"\x00\xff\xfeProtocol mismatch.\r\n")

    def _b_endless(self, conn: ScriptedConnection) -> None:
        line = b"220-" + b"hostile " * 9 + b"\r\n"
        while True:  # until the client hangs up (sendall then raises, ending the session)
            conn.send(line * 64)
