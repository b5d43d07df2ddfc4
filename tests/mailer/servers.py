"""A scriptable aiosmtpd server for the outbox tests: it records every message it takes
(envelope, bytes, Message-ID), counts connections, and answers with scripted replies per
recipient, at DATA, or by closing the connection after the end of the data.

It runs in a thread of the test process on 127.0.0.1 and a port picked by binding to port
0, so a Celery worker in another process can deliver to it.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from tests.ports import free_port

HOST = "127.0.0.1"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message_id(self) -> str:
        return str(BytesHeaderParser().parsebytes(self.data).get("Message-ID", "")).strip()

    @property
    def headers(self):
        return BytesHeaderParser().parsebytes(self.data)


@dataclass
class Script:
    """What the server says. Lists are consumed one reply per transaction; when a list is
    empty the server behaves normally."""

    rcpt: dict[str, list[str]] = field(default_factory=dict)  # address -> replies
    data: list[str] = field(default_factory=list)  # replies to the end of data
    close_after_data: int = 0  # this many times: take the data, then hang up, no reply
    password: str | None = None  # AUTH PLAIN/LOGIN must use it (any username)
    stall_rcpt: int = 0  # this many times: sit on a RCPT (a worker stuck before the data)


class _Handler:
    def __init__(self, server: ScriptedServer) -> None:
        self.server = server

    async def handle_RCPT(self, srv, session, envelope, address, rcpt_options):  # noqa: N802
        if self.server.script.stall_rcpt:
            self.server.script.stall_rcpt -= 1
            self.server.stalled.set()
            await asyncio.sleep(60)
        replies = self.server.script.rcpt.get(address.lower())
        if replies:
            reply = replies.pop(0)
            if not reply.startswith("2"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, srv, session, envelope):  # noqa: N802
        script = self.server.script
        if script.close_after_data:
            script.close_after_data -= 1
            srv.transport.abort()
            return "421 unreachable"  # never sent: the transport is gone
        if script.data:
            reply = script.data.pop(0)
            if not reply.startswith("2"):
                return reply
        self.server.record(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                    envelope.original_content or envelope.content))
        return "250 2.0.0 OK queued"


class _CountingSMTP(SMTP):
    def connection_made(self, transport) -> None:
        self._outer.connection_opened()
        super().connection_made(transport)


class _Controller(Controller):
    def __init__(self, outer: ScriptedServer, *args, **kwargs) -> None:
        self._outer = outer
        super().__init__(*args, **kwargs)

    def factory(self):
        smtp = _CountingSMTP(self.handler, **self.SMTP_kwargs)
        smtp._outer = self._outer
        return smtp


class ScriptedServer:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.port = free_port()
        self.received: list[Received] = []
        self.connections = 0
        self.stalled = threading.Event()
        self._lock = threading.Lock()
        kwargs = {"enable_SMTPUTF8": True, "auth_require_tls": False}
        if self.script.password is not None:
            kwargs["authenticator"] = self._authenticate
        self._controller = _Controller(
            self, _Handler(self), hostname=HOST, port=self.port,
            server_hostname="sink.mailroom.test", **kwargs,
        )

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = getattr(auth_data, "password", b"") == (self.script.password or "").encode()
        # A failing authenticator must say handled=False so aiosmtpd answers 535.
        return AuthResult(success=ok, handled=False)

    def connection_opened(self) -> None:
        with self._lock:
            self.connections += 1

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def per_message_id(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(r.message_id for r in self.received)

    def start(self) -> ScriptedServer:
        self._controller.start()
        # Controller.start() opens a connection of its own to see that the server is up.
        with self._lock:
            self.connections = 0
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
