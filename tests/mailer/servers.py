"""The outbox tests' SMTP server: the shared recording aiosmtpd server of
``tests.smtp_servers`` with a handler that also

* follows a :class:`Script` the test can change at any time (replies per recipient, at
  the end of the data, hanging up after the data, sitting on a RCPT),
* counts connections (to prove connection reuse), and
* hands back what it received as :class:`Received` (bytes, envelope, Message-ID).

It runs in a thread of the test process on 127.0.0.1 and a free port, so a Celery worker
in another process can deliver to it.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from tests.smtp_servers import RecordingHandler, start_smtp_server


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message_id(self) -> str:
        return str(BytesHeaderParser().parsebytes(self.data).get("Message-ID", "")).strip()


@dataclass
class Script:
    """What the server says. Lists are consumed one reply per transaction; when a list is
    empty the server behaves normally."""

    rcpt: dict[str, list[str]] = field(default_factory=dict)  # address -> replies
    data: list[str] = field(default_factory=list)  # replies to the end of data
    close_after_data: int = 0  # this many times: take the data, then hang up, no reply
    stall_rcpt: int = 0  # this many times: sit on a RCPT (a worker stuck before the data)
    stall_data: int = 0  # this many times: take the data, then sit on the reply (stuck after it)
    stall_after: int = 0  # transactions that go through normally before a stall applies


class _ScriptHandler(RecordingHandler):
    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.connections = 0
        self.stalled = threading.Event()
        self._count_lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        # One EHLO per connection: these servers offer no STARTTLS.
        with self._count_lock:
            self.connections += 1
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    def _stall(self, kind: str) -> bool:
        if not getattr(self.script, kind):
            return False
        if self.script.stall_after:
            return False
        setattr(self.script, kind, getattr(self.script, kind) - 1)
        self.stalled.set()
        return True

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self._stall("stall_rcpt"):
            await asyncio.sleep(60)
        replies = self.script.rcpt.get(address.lower())
        if replies and not replies[0].startswith("2"):
            return replies.pop(0)
        if replies:
            replies.pop(0)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def auth_XOAUTH2(self, server, args):  # noqa: N802
        return await self._auth.auth_XOAUTH2(server, args)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self._stall("stall_data"):
            await asyncio.sleep(60)
            return "451 4.3.0 stalled"  # the client is long gone; nothing is recorded
        if self.script.close_after_data:
            self.script.close_after_data -= 1
            server.transport.abort()
            return "421 unreachable"  # never sent: the transport is gone
        if self.script.data and not self.script.data[0].startswith("2"):
            return self.script.data.pop(0)
        if self.script.data:
            self.script.data.pop(0)
        if self.script.stall_after:
            self.script.stall_after -= 1
        return await super().handle_DATA(server, session, envelope)


class ScriptedSink:
    """``accounts`` ({login: password}) turns AUTH on, allowed without TLS."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        accounts: dict[str, str] | None = None,
        token_check=None,
    ) -> None:
        self.script = script or Script()
        self.handler = _ScriptHandler(self.script)
        options: dict = {"auth_require_tls": False} if accounts or token_check else {}
        if accounts:
            options["accounts"] = accounts
        if token_check is not None:
            # XOAUTH2 tokens are checked with their issuer (tests.oauth): a stale one is
            # really refused.
            options["token_check"] = token_check
        self._running = start_smtp_server(handler=self.handler, enable_SMTPUTF8=True, **options)
        self.port = self._running.port

    @property
    def connections(self) -> int:
        return self.handler.connections

    @property
    def stalled(self) -> threading.Event:
        return self.handler.stalled

    @property
    def received(self) -> list[Received]:
        return [Received(m.mail_from, m.rcpt_tos, m.content) for m in list(self.handler.messages)]

    def per_message_id(self) -> collections.Counter[str]:
        return collections.Counter(r.message_id for r in self.received)

    def stop(self) -> None:
        self._running.stop()

    def __enter__(self) -> ScriptedSink:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
