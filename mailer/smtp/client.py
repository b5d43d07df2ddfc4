"""The synchronous ESMTP submission client. The only module in ``mailer.smtp`` with sockets.

RFCs followed: 5321 (SMTP), 3207 (STARTTLS), 8314 (implicit TLS), 4954 (AUTH), 2920
(PIPELINING), 3030 (CHUNKING/BDAT), 1870 (SIZE), 6152 (8BITMIME), 6531 (SMTPUTF8),
3461 (DSN), 2034/3463 (enhanced status codes).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import re
import select
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, BinaryIO

from . import auth
from .capabilities import Capabilities
from .data import BLOCK_SIZE, DataEncoder, iter_blocks
from .errors import (
    SMTPAuthenticationError,
    SMTPAuthNotSupported,
    SMTPCertificateError,
    SMTPCommandArgumentError,
    SMTPConnectError,
    SMTPDataError,
    SMTPDestinationRefused,
    SMTPError,
    SMTPGreetingError,
    SMTPMessageTooLarge,
    SMTPNotSupported,
    SMTPOutcomeUnknown,
    SMTPPlaintextAuthRefused,
    SMTPProtocolError,
    SMTPRecipientsRefused,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPStartTLSNotSupported,
    SMTPTimeoutError,
    SMTPTLSError,
    SMTPTokenRefused,
)
from .replies import RecipientResult, Reply, SendResult, SMTPStatus, read_reply

__all__ = ["Envelope", "SMTPClient", "Security"]

# Linux only; elsewhere the kernel's delayed ACK stays as it is.
_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)
_RECV_SIZE = 64 * 1024
# RFC 4954 does not bound the number of 334 challenges; a hostile server could loop forever.
_MAX_AUTH_ROUNDS = 8
# With PIPELINING, intermediate BDAT replies are read in batches; bound how many may wait.
_MAX_UNREAD_BDAT = 16
_TRANSCRIPT_LINE = 1000
# Plain TCP on Linux uses a blocking socket with the kernel's SO_RCVTIMEO/SO_SNDTIMEO:
# Python's own socket timeouts poll() before every send and receive, a second system call
# each time. (TLS sockets keep Python's timeouts: CPython's ssl module would wait forever
# on a blocking socket whose kernel timeout expired.)
_KERNEL_TIMEOUTS = sys.platform.startswith("linux")
# Before a transaction, look for a server-side close only if the connection was idle this long.
_IDLE_CHECK_AFTER = 0.05
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EHLO_NAME = re.compile(r"[A-Za-z0-9.-]+|\[[A-Za-z0-9.:]+\]")
_DSN_NOTIFY = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
_DSN_RET = {"FULL", "HDRS"}
_SCAN_HEADERS_MAX = 1024 * 1024


class Security(enum.StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@functools.lru_cache(maxsize=1)
def _fqdn() -> str | None:
    name = socket.getfqdn()
    if "." in name and _EHLO_NAME.fullmatch(name) and not name.startswith("."):
        return name
    return None


def _address_literal(sock: socket.socket) -> str:
    addr = sock.getsockname()[0]
    # RFC 5321 section 4.1.3: IPv6 literals carry an "IPv6:" tag.
    return f"[IPv6:{addr}]" if ":" in addr else f"[{addr}]"


def _check_send_args(
    envelope_from: str,
    rcpts: list[str],
    dsn_notify: Iterable[str] | None,
    dsn_ret: str | None,
    envid: str | None,
) -> list[str] | None:
    """Refuse, before anything is sent, arguments no server could take; the DSN NOTIFY list."""
    if not rcpts:
        raise SMTPCommandArgumentError("A message needs at least one recipient.", phase="mail")
    _check_arg(envelope_from, "sender address", "mail")
    for rcpt in rcpts:
        _check_arg(rcpt, "recipient address", "rcpt")
        if not rcpt:
            raise SMTPCommandArgumentError("A recipient address is empty.", phase="rcpt")
    notify = [n.strip().upper() for n in dsn_notify] if dsn_notify is not None else None
    if notify is not None and (
        not notify or not set(notify) <= _DSN_NOTIFY or ("NEVER" in notify and len(notify) > 1)
    ):
        raise SMTPCommandArgumentError(
            f"DSN NOTIFY must be NEVER or some of SUCCESS, FAILURE, DELAY; got {notify!r}.",
            phase="rcpt",
        )
    if dsn_ret is not None and dsn_ret.upper() not in _DSN_RET:
        raise SMTPCommandArgumentError(
            f"DSN RET must be FULL or HDRS; got {dsn_ret!r}.", phase="mail"
        )
    if envid is not None:
        _check_arg(envid, "DSN envelope id", "mail")
    return notify


def _check_ehlo_name(name: str) -> None:
    _check_arg(name, "local host name", "ehlo")
    if " " in name or not name or not name.isascii():
        raise SMTPCommandArgumentError(
            f"The local host name {name!r} is not a valid EHLO name.", phase="ehlo"
        )


def _check_arg(value: str, what: str, phase: str) -> None:
    """Refuse CR, LF and other control characters: they would end the command early and
    let the rest be read as a second command (command injection, RFC 5321 section 4.1.1)."""
    if _CONTROL.search(value):
        raise SMTPCommandArgumentError(
            f"The {what} {value!r} contains a line break or another control character; "
            "that is never valid in SMTP. Correct it and try again.",
            phase=phase,
        )


def _orcpt(address: str) -> str:
    """RFC 3461 §4.2: the original recipient, so that a report names the address as it was
    given. Left out for a non-ASCII address: its "utf-8" address type (RFC 6533) is known
    only to servers that also know SMTPUTF8 DSNs, and ORCPT is optional."""
    return f" ORCPT=rfc822;{_xtext(address)}" if address.isascii() else ""


def _xtext(value: str) -> str:
    """RFC 3461 section 4: xtext-encode an ENVID/ORCPT value."""
    return "".join(
        ch if "!" <= ch <= "~" and ch not in "+=" else "".join(f"+{b:02X}" for b in ch.encode())
        for ch in value
    )


class _Reader:
    """A bounded line reader over a socket that lets us see what is buffered.

    We need to know whether bytes are waiting after the 220 reply to STARTTLS (they must
    not survive into the TLS session), which ``socket.makefile()`` does not tell.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self.reads = 0
        #: When set (a time.monotonic() value), a recv timeout is retried until then: the
        #: reply after the data may take minutes, and the socket timeout need not change.
        self.patient_until: float | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def discard(self) -> int:
        n = len(self._buf)
        self._buf.clear()
        return n

    def readline(self, limit: int) -> bytes:
        buf = self._buf
        start = 0
        while True:
            i = buf.find(b"\n", start, limit)
            if i >= 0:
                line = bytes(buf[: i + 1])
                del buf[: i + 1]
                return line
            if len(buf) >= limit:
                line = bytes(buf[:limit])
                del buf[:limit]
                return line
            start = len(buf)
            try:
                chunk = self._sock.recv(_RECV_SIZE)
            except (TimeoutError, BlockingIOError):  # BlockingIOError: a kernel timeout
                if self.patient_until is None or time.monotonic() >= self.patient_until:
                    raise
                continue
            self.reads += 1
            if not chunk:
                line = bytes(buf)
                buf.clear()
                return line
            if _QUICKACK:
                # Acknowledge what comes next at once: a server that writes the replies to
                # a pipelined group in two writes, with Nagle on (Postfix's smtp-sink), holds
                # the second until our ACK, and Linux delays that ACK by up to 40 ms.
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            buf += chunk


class _IOGuard:
    """The context manager behind ``SMTPClient._io`` (a class, not ``@contextmanager``:
    it is entered several times per message and a generator costs several times more)."""

    __slots__ = ("client", "phase")

    def __init__(self, client: SMTPClient, phase: str) -> None:
        self.client = client
        self.phase = phase

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        client, phase = self.client, self.phase
        if isinstance(exc, SMTPServerDisconnected | SMTPProtocolError):
            client.close()
            return  # re-raised as it is
        if isinstance(exc, TimeoutError | BlockingIOError):  # the latter: a kernel timeout
            client.close()
            raise client._timeout(phase) from exc
        if isinstance(exc, ssl.SSLError):
            client.close()
            raise SMTPServerDisconnected(
                f"The TLS connection to the server failed ({exc.reason or exc}).", phase=phase
            ) from exc
        if isinstance(exc, OSError):
            client.close()
            raise SMTPServerDisconnected(
                f"The server closed the connection ({exc.strerror or exc}).", phase=phase
            ) from exc


@dataclasses.dataclass(frozen=True)
class Envelope:
    """One message's envelope as the commands that carry it (``SMTPClient.envelope``):
    MAIL with its parameters and a RCPT per recipient, checked and ready to go out."""

    sender: str
    rcpts: tuple[str, ...]
    commands: tuple[str, ...]


@dataclasses.dataclass
class _Ahead:
    """An envelope that went out right behind the end of the previous message's data
    (``SMTPClient.next_envelope_hook``), its replies not read yet. ``usable`` is False when
    it could not be written whole: the connection is then out of step and is never used."""

    envelope: Envelope  # written with DATA after it
    usable: bool = True


class SMTPClient:
    """A synchronous ESMTP client that can be kept open across many messages.

    ``security`` is ``"none"``, ``"starttls"`` (RFC 3207, never falls back to plaintext) or
    ``"tls"`` (implicit TLS, RFC 8314). Certificates and host names are verified unless
    ``verify=False``; ``cafile``/``cadata`` trust a private CA instead of the system store.
    ``secret`` is the password, or the OAuth2 access token for XOAUTH2/OAUTHBEARER.
    AUTH is refused on an unencrypted connection unless ``allow_plaintext_auth`` is True.
    ``auth_hint``: plain words a permanent refusal of a token carries
    (``SMTPTokenRefused.hint``), saying what to change at the token's issuer.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        local_hostname: str | None = None,
        username: str | None = None,
        secret: str | None = None,
        auth_mechanism: str = "auto",
        allow_plaintext_auth: bool = False,
        verify: bool = True,
        cafile: str | None = None,
        cadata: str | bytes | None = None,
        connect_timeout: float = 30.0,
        command_timeout: float = 60.0,
        data_timeout: float = 600.0,
        transcript: bool = False,
        transcript_limit: int = 64 * 1024,
        destination_check: Callable[[str], str | None] | None = None,
        auth_hint: str = "",
    ) -> None:
        self.host = host
        self.port = int(port)
        self.security = Security(security)
        if local_hostname is not None:
            _check_ehlo_name(local_hostname)
        self.local_hostname = local_hostname
        self.username = username
        self.secret = secret
        self.auth_mechanism = auth_mechanism
        self.allow_plaintext_auth = allow_plaintext_auth
        self.auth_hint = auth_hint
        self.verify = verify
        self.cafile = cafile
        self.cadata = cadata
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.data_timeout = data_timeout
        self.record_transcript = transcript
        self.transcript_limit = transcript_limit
        #: Called with every address the host name resolves to; a string it returns is the
        #: plain-words reason that address may not be connected to (None: it may).
        self.destination_check = destination_check
        self.transcript: list[str] = []
        self._transcript_size, self._transcript_full = 0, False
        self.capabilities: Capabilities | None = None
        self.end_of_data_hook: Callable[[], None] | None = None
        #: The next message's :class:`Envelope`, sent behind this one's data (``_upcoming``).
        self.next_envelope_hook: Callable[[], Envelope | None] | None = None
        self._ahead: _Ahead | None = None
        #: The greeting reply and the AUTH mechanism used, once connected.
        self.greeting: Reply | None = None
        self.auth_mechanism_used: str | None = None
        self._sock: socket.socket | None = None
        self._reader: _Reader | None = None
        self._current_timeout: float | None = None
        self._last_reply = 0.0
        self._kernel_timeouts = self._tls = self._connected = False

    # ----------------------------------------------------------------- public API

    @property
    def is_connected(self) -> bool:
        return self._connected and self._sock is not None

    @property
    def pending_envelope(self) -> Envelope | None:
        """The envelope sent ahead with the last message's end of data, not yet used."""
        return self._ahead.envelope if self._ahead is not None else None

    @property
    def is_encrypted(self) -> bool:
        return self._tls

    def connect(self) -> Capabilities:
        """Connect, read the greeting, EHLO (HELO fallback), STARTTLS + EHLO, AUTH.

        The connection is published (``is_connected``) only when every step succeeded;
        on any failure it is closed and the error raised.

        :raises SMTPConnectError, SMTPTimeoutError, SMTPTLSError, SMTPCertificateError,
            SMTPStartTLSNotSupported, SMTPGreetingError, SMTPAuthenticationError,
            SMTPAuthNotSupported, SMTPPlaintextAuthRefused, SMTPProtocolError,
            SMTPServerDisconnected:
        """
        if self.is_connected:
            assert self.capabilities is not None
            return self.capabilities
        try:
            self._open()
            greeting = self._read("greeting")
            self.greeting = greeting
            if greeting.code != SMTPStatus.READY:
                raise SMTPGreetingError(
                    "The server refused the session in its greeting.",
                    reply=greeting,
                    phase="greeting",
                )
            caps = self._ehlo()
            if self.security is Security.STARTTLS:
                caps = self._starttls(caps)
            if self.username is not None:
                self.auth_mechanism_used = self._authenticate(caps)
            self.capabilities = caps
            self._connected = True
            return caps
        except BaseException:
            self.close()
            raise

    def send(
        self,
        envelope_from: str,
        recipients: Iterable[str] | str,
        message: bytes | BinaryIO,
        **options: Any,
    ) -> SendResult:
        """Send one message. ``message`` is bytes or a binary file object, streamed in blocks.

        Returns when at least one recipient was accepted and the data reply was 2xx, with
        any partial refusals in the result. After a failed transaction the connection is
        RSET and stays usable (unless the failure closed it). ``dsn_notify``, ``dsn_ret``,
        ``envid`` and ``dsn_orcpt`` (each recipient's ORCPT) ask for delivery reports
        (RFC 3461), and are sent only where the server offers DSN. ``options`` are the
        keyword arguments of :meth:`envelope`.

        :raises SMTPCommandArgumentError: an argument has a control character (nothing sent).
        :raises SMTPNotSupported: SMTPUTF8 or 8BITMIME is needed but not offered.
        :raises SMTPMessageTooLarge: over the server's SIZE (before any data) or refused 552.
        :raises SMTPSenderRefused: MAIL FROM refused.
        :raises SMTPRecipientsRefused: every recipient refused (``.result`` names each).
        :raises SMTPDataError: DATA/BDAT refused or a non-2xx final reply (``.result``).
        :raises SMTPServerDisconnected, SMTPTimeoutError, SMTPProtocolError: before the end
            of the data was sent; the connection is closed.
        :raises SMTPOutcomeUnknown: lost after the end of the data, before the final reply.
        """
        env = self.envelope(envelope_from, recipients, message, **options)
        caps = self._require_connection("mail")
        if self._ahead is None:
            self._check_alive("mail")
        return self._transaction(caps, env, message)

    def envelope(
        self,
        envelope_from: str,
        recipients: Iterable[str] | str,
        message: bytes | BinaryIO,
        *,
        dsn_notify: Iterable[str] | None = None,
        dsn_ret: str | None = None,
        envid: str | None = None,
        dsn_orcpt: bool = False,
        smtputf8: bool | None = None,
        body_8bit: bool | None = None,
        size_hint: int | None = None,
    ) -> Envelope:
        """The envelope :meth:`send` would send for these arguments on this connection,
        checked against what the server offers; nothing is sent. Raises what :meth:`send`
        raises before anything is sent. A file is scanned and rewound."""
        rcpts = [recipients] if isinstance(recipients, str) else list(recipients)
        notify = _check_send_args(envelope_from, rcpts, dsn_notify, dsn_ret, envid)
        caps = self._require_connection("mail")
        size, eight, need_utf8 = self._body_type(
            caps, message, size_hint, body_8bit, smtputf8, [envelope_from, *rcpts]
        )
        mail = f"MAIL FROM:<{envelope_from}>"
        if caps.has("SIZE") and size is not None:
            mail += f" SIZE={size}"
        if eight and caps.eightbitmime:
            mail += " BODY=8BITMIME"
        if need_utf8:
            mail += " SMTPUTF8"
        if caps.dsn:
            if dsn_ret is not None:
                mail += f" RET={dsn_ret.upper()}"
            if envid is not None:
                mail += f" ENVID={_xtext(envid)}"
        notify_param = f" NOTIFY={','.join(notify)}" if notify and caps.dsn else ""
        rcpt_cmds = [f"RCPT TO:<{r}>{notify_param}{_orcpt(r) if dsn_orcpt and caps.dsn else ''}"
                     for r in rcpts]
        return Envelope(envelope_from, tuple(rcpts), (mail, *rcpt_cmds))

    def _body_type(
        self,
        caps: Capabilities,
        message: bytes | BinaryIO,
        size_hint: int | None,
        body_8bit: bool | None,
        smtputf8: bool | None,
        addresses: list[str],
    ) -> tuple[int | None, bool, bool]:
        """(size, 8-bit body, needs SMTPUTF8) of a message, checked against what the server
        offers: raises before anything is sent when the server cannot take it."""
        size, has_8bit, header_8bit = self._inspect(message, size_hint, body_8bit, smtputf8)
        addresses_utf8 = any(not a.isascii() for a in addresses)
        need_utf8 = smtputf8 if smtputf8 is not None else (addresses_utf8 or header_8bit)
        if addresses_utf8 and not need_utf8:
            raise SMTPCommandArgumentError(
                "An address contains non-ASCII characters, which needs SMTPUTF8.", phase="mail"
            )
        if need_utf8 and not caps.smtputf8:
            raise SMTPNotSupported(
                "This message needs SMTPUTF8 (an address or header has non-ASCII characters) "
                "but the server does not offer it. Use ASCII addresses or another server.",
                phase="mail",
            )
        if body_8bit is not None:
            eight = body_8bit
        elif has_8bit is None:
            # A stream we cannot scan: declaring 8BITMIME is harmless where it is offered.
            eight = caps.eightbitmime
        else:
            eight = has_8bit
        if eight and not caps.eightbitmime and not need_utf8:
            raise SMTPNotSupported(
                "This message has 8-bit content but the server does not offer 8BITMIME. "
                "Encode the body as quoted-printable or base64, or use another server.",
                phase="mail",
            )
        if caps.size is not None and size is not None and size > caps.size:
            raise SMTPMessageTooLarge(
                f"The message is {size} bytes but the server accepts at most {caps.size} "
                "bytes. Make it smaller (fewer or smaller attachments). Nothing was sent.",
                limit=caps.size,
                phase="mail",
            )
        return size, eight, need_utf8

    def noop(self) -> bool:
        """Return True if the connection answers NOOP; False (and closed) if it is dead."""
        if not self.is_connected:
            return False
        if self._ahead is not None:
            self.close()  # a DATA sent ahead waits for data: a NOOP now would be data
            return False
        try:
            reply = self._command("NOOP", "mail")
        except SMTPError:
            self.close()
            return False
        if reply.code != SMTPStatus.COMPLETED:
            self.close()
            return False
        return True

    def rset(self) -> None:
        """Abort the current transaction (RFC 5321 section 4.1.1.5).

        :raises SMTPServerDisconnected: not connected, or the server is gone (then closed).
        :raises SMTPProtocolError: RSET was not answered with 250 (then closed).
        """
        self._require_connection("mail")
        if self._ahead is not None:
            self.close()
            raise SMTPServerDisconnected(
                "The connection was closed: it was prepared for another message.", phase="mail"
            )
        reply = self._command("RSET", "mail")
        if reply.code != SMTPStatus.COMPLETED:
            self.close()
            raise SMTPProtocolError(
                "The server did not accept RSET; the connection was closed.",
                reply=reply,
                phase="mail",
            )

    def quit(self) -> None:
        """Say QUIT and close; never raises, even if the server has already gone."""
        if self._sock is not None and self._ahead is None:
            # (With an envelope sent ahead, a DATA may be waiting for data: QUIT would be
            # data; closing ends that transaction unfinished, so nothing is delivered.)
            try:
                self._write_lines(["QUIT"], "mail")
                self._read("mail", timeout=min(self.command_timeout, 5.0))
            except (SMTPError, OSError):
                pass
        self.close()

    def close(self) -> None:
        """Close the socket without QUIT (idempotent)."""
        sock, self._sock, self._reader = self._sock, None, None
        self._ahead = None
        self._connected = False
        self._tls = False
        self._kernel_timeouts = False
        self._current_timeout = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def abort(self) -> None:
        """Cut the connection from another thread, for a caller's overall deadline: a read,
        write or TLS handshake blocked in the client's thread fails at once (and closes the
        client as any failure does). Does nothing before the socket is open or after close.
        ``shutdown`` rather than ``close``: closing a descriptor another thread is blocked on
        does not wake that thread on Linux."""
        sock = self._sock
        if sock is not None:
            try:
                # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would drop
                # the TLS object under the reading thread's feet.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> SMTPClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.quit()

    # ------------------------------------------------------------ connection setup

    def _ssl_context(self) -> ssl.SSLContext:
        if not self.verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            return ssl.create_default_context(cafile=self.cafile, cadata=self.cadata)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise SMTPCertificateError(
                f"The CA certificate given for this server could not be loaded ({exc}). "
                "Paste the server's CA certificate in PEM format.",
                phase="connect",
            ) from exc

    def _connect_checked(self) -> socket.socket:
        """``socket.create_connection`` with the destination check in it: the name is
        resolved once, every address is checked, and the socket connects to a checked
        address itself, so a DNS answer that changes between the check and the connection
        (rebinding) cannot reach an address the check refused."""
        refused: str | None = None
        error: OSError | None = None
        infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
        for family, kind, proto, _name, sockaddr in infos:
            if self.destination_check is not None:
                reason = self.destination_check(str(sockaddr[0]))
                if reason:
                    refused = refused or reason
                    continue
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.connect_timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        if error is not None:
            raise error
        if refused is not None:
            raise SMTPDestinationRefused(refused, phase="connect")
        raise OSError(f"{self.host} resolved to no address")

    def _open(self) -> None:
        ctx = self._ssl_context() if self.security is not Security.NONE else None
        where = f"{self.host}:{self.port}"
        try:
            sock = self._connect_checked()
        except socket.gaierror as exc:
            raise SMTPConnectError(
                f"Could not find the SMTP server {self.host!r} ({exc.strerror}). "
                "Check the server name.",
                phase="connect",
            ) from exc
        except TimeoutError as exc:
            raise SMTPTimeoutError(
                f"Timed out after {self.connect_timeout:g} s connecting to {where}. Check the "
                "host and port; a firewall may be blocking the connection.",
                phase="connect",
            ) from exc
        except OSError as exc:
            raise SMTPConnectError(
                f"Could not connect to {where} ({exc.strerror or exc}). Check the host and "
                "port, and that the server is running.",
                phase="connect",
            ) from exc
        # Commands go out as whole writes; Nagle would only add delay between them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._reader = _Reader(sock)
        self._current_timeout = self.connect_timeout
        if self.security is Security.NONE and _KERNEL_TIMEOUTS:
            sock.settimeout(None)
            self._kernel_timeouts = True
            self._current_timeout = None
        if self.security is Security.TLS:
            assert ctx is not None
            self._handshake(ctx, "connect")
        self._set_timeout(self.command_timeout)

    def _handshake(self, ctx: ssl.SSLContext, phase: str) -> None:
        assert self._sock is not None
        try:
            tls = ctx.wrap_socket(self._sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raise SMTPCertificateError(
                f"The server's TLS certificate could not be verified "
                f"({exc.verify_message or exc.reason}). If the server uses a self-signed or "
                "private certificate, add its CA certificate to the account; otherwise the "
                "connection may be intercepted.",
                phase=phase,
            ) from exc
        except ssl.SSLError as exc:
            raise SMTPTLSError(
                f"The TLS handshake with {self.host}:{self.port} failed ({exc.reason or exc}). "
                "Check the security setting matches the port (465: TLS, 587: STARTTLS).",
                phase=phase,
            ) from exc
        except TimeoutError as exc:
            raise self._timeout(phase) from exc
        except OSError as exc:
            raise SMTPServerDisconnected(
                f"The server closed the connection during the TLS handshake ({exc}).",
                phase=phase,
            ) from exc
        self._sock = tls
        self._reader = _Reader(tls)
        self._current_timeout = tls.gettimeout()
        self._tls = True

    def _ehlo(self) -> Capabilities:
        assert self._sock is not None
        if self.local_hostname is None:
            self.local_hostname = _fqdn() or _address_literal(self._sock)
        reply = self._command(f"EHLO {self.local_hostname}", "ehlo")
        if reply.code == SMTPStatus.COMPLETED:
            return Capabilities.from_ehlo(reply)
        # RFC 5321 section 3.2: a server that does not know EHLO answers 500/502 (or 501/504
        # from some old implementations); fall back to HELO.
        if reply.code in (500, 501, 502, 504):
            helo = self._command(f"HELO {self.local_hostname}", "ehlo")
            if helo.code == SMTPStatus.COMPLETED:
                return Capabilities.from_helo()
            reply = helo
        raise SMTPGreetingError(
            "The server refused our EHLO/HELO greeting.", reply=reply, phase="ehlo"
        )

    def _starttls(self, caps: Capabilities) -> Capabilities:
        if not caps.starttls:
            raise SMTPStartTLSNotSupported(
                f"The server {self.host}:{self.port} does not offer STARTTLS, so the "
                "connection cannot be encrypted; nothing was sent in plaintext. Use implicit "
                "TLS (usually port 465) or ask the provider for the right port.",
                phase="starttls",
            )
        reply = self._command("STARTTLS", "starttls")
        if reply.code != SMTPStatus.READY:
            raise SMTPTLSError("The server refused to start TLS.", reply=reply, phase="starttls")
        assert self._reader is not None
        # Anything the server sent after its 220 arrived in plaintext and could have been
        # injected by a man in the middle; it must never be read as if it came over TLS
        # (the aiosmtplib 5.1.2 / CVE-2011-0411 class of bugs). Drop it.
        dropped = self._reader.discard()
        if dropped:
            self._note(f"[discarded {dropped} bytes sent in plaintext before the TLS handshake]")
        self._handshake(self._ssl_context(), "starttls")
        # RFC 3207 section 4.2: forget everything learned before TLS and ask again.
        self.capabilities = None
        return self._ehlo()

    def _authenticate(self, caps: Capabilities) -> str:
        if not self._tls and not self.allow_plaintext_auth:
            raise SMTPPlaintextAuthRefused(
                "The connection is not encrypted, so the password was not sent. Use STARTTLS "
                "or TLS, or explicitly allow plaintext authentication for this server.",
                phase="auth",
            )
        if not caps.auth:
            raise SMTPAuthNotSupported(
                "A user name was given but the server does not offer authentication (AUTH). "
                "Remove the credentials or check the port (submission is usually 587 or 465).",
                phase="auth",
            )
        mech = auth.choose_mechanism(self.auth_mechanism, caps.auth, encrypted=self._tls)
        if mech is None:
            raise SMTPAuthNotSupported(
                f"The server offers AUTH {' '.join(caps.auth)}, none of which can be used "
                f"with the mechanism setting {self.auth_mechanism!r}. Choose one of those.",
                phase="auth",
            )
        steps = auth.exchange(
            mech, self.username or "", self.secret or "", host=self.host, port=self.port
        )
        initial = next(steps)
        if initial is None:
            self._write_lines([f"AUTH {mech}"], "auth")
        else:
            self._write_lines([f"AUTH {mech} {initial}"], "auth", log=[f"AUTH {mech} [redacted]"])
        for _ in range(_MAX_AUTH_ROUNDS):
            reply = self._read("auth")
            if reply.code == SMTPStatus.AUTH_SUCCESSFUL:
                return mech
            if reply.code != SMTPStatus.AUTH_CONTINUE:
                raise self._auth_failure(mech, reply)
            try:
                challenge = base64.b64decode(reply.lines[0].strip(), validate=True)
                answer = steps.send(challenge)
            except (binascii.Error, StopIteration):
                answer = "*"  # RFC 4954 section 4: cancel the exchange.
            self._write_lines([answer or ""], "auth", log=["[redacted]"])
        self.close()
        raise SMTPProtocolError(
            f"The server sent more than {_MAX_AUTH_ROUNDS} AUTH challenges; gave up.",
            phase="auth",
        )

    def _auth_failure(self, mech: str, reply: Reply) -> SMTPAuthenticationError:
        text = self._auth_failure_text(reply)
        if mech in ("XOAUTH2", "OAUTHBEARER") and reply.code // 100 == 5:
            error = SMTPTokenRefused(text, reply=reply, phase="auth")
            error.hint = self.auth_hint
            return error
        return SMTPAuthenticationError(text, reply=reply, phase="auth")

    @staticmethod
    def _auth_failure_text(reply: Reply) -> str:
        if reply.code == SMTPStatus.AUTH_TOO_WEAK:
            return (
                "The server requires a different sign-in method (for example an app password "
                "or OAuth2)."
            )
        if reply.code == SMTPStatus.ENCRYPTION_REQUIRED:
            return "The server requires an encrypted connection for this sign-in method."
        if reply.is_transient:
            return "The server could not check the credentials right now; it will be retried."
        return (
            "The server refused the user name or password (or token). Check the credentials; "
            "some providers need an app password."
        )

    # ----------------------------------------------------------------- transaction

    def _require_connection(self, phase: str) -> Capabilities:
        if not self.is_connected or self.capabilities is None:
            raise SMTPServerDisconnected(
                "Not connected to the server; call connect() first.", phase=phase
            )
        return self.capabilities

    def _check_alive(self, phase: str) -> None:
        """Before a transaction, notice a connection the server has already closed (an idle
        timeout, often announced with 421) so nothing is sent into a dead connection."""
        sock, reader = self._sock, self._reader
        assert sock is not None and reader is not None
        if not reader.buffered and time.monotonic() - self._last_reply < _IDLE_CHECK_AFTER:
            return  # answered a moment ago: not worth a system call per message
        if not reader.buffered and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return
            try:
                if isinstance(sock, ssl.SSLSocket):
                    sock.setblocking(False)
                    try:
                        chunk = sock.recv(_RECV_SIZE)
                    finally:
                        sock.settimeout(self._current_timeout)
                else:
                    chunk = sock.recv(_RECV_SIZE, socket.MSG_DONTWAIT)
            except (ssl.SSLWantReadError, BlockingIOError):
                return  # only TLS housekeeping (e.g. TLS 1.3 session tickets)
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                raise SMTPServerDisconnected(
                    "The server had closed the connection (it was idle too long or the server "
                    "restarted). Nothing was sent; reconnect and try again.",
                    phase=phase,
                )
            reader.feed(chunk)
        reply = self._read(phase)
        self.close()
        raise SMTPServerDisconnected(
            "The server sent an unexpected message between messages and the connection was "
            "closed. Nothing was sent; reconnect and try again.",
            reply=reply,
            phase=phase,
        )

    def _inspect(
        self,
        message: bytes | BinaryIO,
        size_hint: int | None,
        body_8bit: bool | None,
        smtputf8: bool | None,
    ) -> tuple[int | None, bool | None, bool]:
        """Return (size, has 8-bit bytes, headers have 8-bit bytes) without loading a file.

        A seekable file is scanned block by block and rewound; a non-seekable one is not
        scanned (the caller's ``body_8bit``/``smtputf8``/``size_hint`` are used).
        """
        if isinstance(message, bytes | bytearray):
            # No slicing of the whole message: a 25 MB message must not be copied here.
            header_end = _header_end(message, _SCAN_HEADERS_MAX)
            return len(message), not message.isascii(), not message[:header_end].isascii()
        if isinstance(message, memoryview):
            head = bytes(message[:_SCAN_HEADERS_MAX])
            has_8bit = any(not block.isascii() for block in iter_blocks(message))
            return message.nbytes, has_8bit, not head[: _header_end(head, len(head))].isascii()
        need_scan = body_8bit is None or smtputf8 is None
        try:
            seekable = message.seekable()
        except (AttributeError, OSError):
            seekable = False
        if not seekable:
            return size_hint, None, False
        start = message.tell()
        size = 0
        has_8bit = header_8bit = False
        head = b""
        in_headers = need_scan
        for block in iter_blocks(message):
            size += len(block)
            if not need_scan:
                continue
            if in_headers:
                head = (head + block)[:_SCAN_HEADERS_MAX]
                end = _header_end(head, len(head))
                if end < len(head) or len(head) >= _SCAN_HEADERS_MAX:
                    in_headers = False
                    header_8bit = not head[:end].isascii()
            if not has_8bit and not block.isascii():
                has_8bit = True
        if in_headers:
            header_8bit = not head.isascii()
        message.seek(start)
        return size, has_8bit, header_8bit

    def _transaction(self, caps: Capabilities, env: Envelope, message: bytes | BinaryIO,
                     ) -> SendResult:
        blocks = iter_blocks(message)
        chunking = caps.chunking
        encoder = DataEncoder(dot_stuff=not chunking)
        pipelining = caps.pipelining
        # With CHUNKING + PIPELINING a message that fits one block goes out with its envelope
        # in a single write: one round trip per message (RFC 3030 section 4.2 allows
        # pipelining BDAT; the server reads the chunk by its length whatever it decided).
        first = b""
        single_chunk = False
        if chunking and pipelining:
            first, single_chunk = self._first_chunk(blocks, encoder)
        commands = list(env.commands)
        phases = ["mail"] + ["rcpt"] * (len(commands) - 1)
        final_write: bytes | None = None
        if single_chunk:
            final_write = b"BDAT %d LAST\r\n" % len(first) + first
        elif not chunking:
            commands.append("DATA")
            phases.append("data")
        deadline = time.monotonic() + self.data_timeout

        if self._take_ahead(env, commands):
            replies = [self._closing_check(self._read(phase), phase) for phase in phases]
        elif pipelining:
            replies = self._pipelined(commands, phases, final_write, len(first))
        else:
            replies = self._one_by_one(commands, phases)
        result, last = self._envelope_result(env.sender, list(env.rcpts), replies)
        if final_write is not None:
            # The whole message (and its end) went out with the envelope.
            assert last is not None
            data_reply = last
        elif chunking:
            data_reply = self._stream_bdat(blocks, encoder, first, deadline, pipelining)
        else:
            assert last is not None
            if last.code != SMTPStatus.START_INPUT:
                self._reset_after_failure()
                raise self._data_error(last, result, "data")
            data_reply = self._stream_data(blocks, encoder, deadline)
        result.data_reply = data_reply
        if not 200 <= data_reply.code < 300:
            self._reset_after_failure()
            raise self._data_error(data_reply, result, "after-data")
        return result

    def _take_ahead(self, env: Envelope, commands: list[str]) -> bool:
        """True if these commands already went out behind the previous message's data (their
        replies are to be read). Another envelope waiting there closes the connection: what
        it started must never be ended by this message's data."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return False
        if not ahead.usable or ahead.envelope != env or commands[-1] != "DATA":
            self.close()
            raise SMTPServerDisconnected(
                "The connection was closed because it was prepared for another message. "
                "Nothing of this message was sent; reconnect and try again.",
                phase="mail",
            )
        self._note("[the envelope below went out right behind the previous message's data]")
        for line in commands:
            self._log(line)
        return True

    def _envelope_result(
        self, sender: str, rcpts: list[str], replies: list[Reply]
    ) -> tuple[SendResult, Reply | None]:
        """The envelope's replies → the result so far and the reply after the last RCPT (to
        DATA, or to a pipelined BDAT). Raises when the sender or every recipient was refused,
        leaving the connection reset."""
        result = SendResult()
        mail_reply = replies[0]
        rcpt_replies = replies[1 : 1 + len(rcpts)]
        last = replies[1 + len(rcpts)] if len(replies) > 1 + len(rcpts) else None
        if not 200 <= mail_reply.code < 300:
            self._after_failed_envelope(last)
            raise SMTPSenderRefused(
                f"The server refused the sender address <{sender}>.",
                sender=sender,
                reply=mail_reply,
                phase="mail",
            )
        for address, reply in zip(rcpts, rcpt_replies, strict=False):
            result.recipients.append(
                RecipientResult(address=address, accepted=200 <= reply.code < 300, reply=reply)
            )
        if not result.accepted:
            self._after_failed_envelope(last)
            raise SMTPRecipientsRefused(
                "The server refused every recipient; the message was not sent.",
                result=result,
                phase="rcpt",
            )
        return result, last

    def _first_chunk(self, blocks: Iterator[bytes], encoder: DataEncoder) -> tuple[bytes, bool]:
        """Encode the first block; tell whether it is the whole message (read-ahead)."""
        out = b""
        for raw in blocks:
            out += encoder.feed(raw)
            if len(out) >= BLOCK_SIZE:
                return out, False
        return out + encoder.finish(), True

    def _pipelined(
        self, commands: list[str], phases: list[str], final_write: bytes | None, size: int
    ) -> list[Reply]:
        """RFC 2920 section 3.1: MAIL, every RCPT and DATA (or the single BDAT ... LAST with
        the message) go out in one write; the replies are read in order."""
        if final_write is None:
            self._write_lines(commands, phases[0])
            return [self._closing_check(self._read(phase), phase) for phase in phases]
        self._end_of_data()
        log = [*commands, f"BDAT {size} LAST", f"<{size} bytes of message data>"]
        self._write_lines(commands, "mail", log=log, extra=final_write)
        # The end of the data is already out: a lost connection from here on leaves the
        # outcome unknown.
        replies = []
        for phase in [*phases, "after-data"]:
            reply = self._read_final()
            replies.append(reply if phase == "after-data" else self._closing_check(reply, phase))
        return replies

    def _closing_check(self, reply: Reply, phase: str) -> Reply:
        """A 421 in the middle of the envelope: the server has closed the session and the
        remaining replies will never come (RFC 5321 section 3.8). Nothing was delivered."""
        if reply.code == SMTPStatus.NOT_AVAILABLE:
            raise SMTPServerDisconnected(
                "The server is closing the connection; the message was not sent and will be "
                "tried again.",
                reply=reply,
                phase=phase,
            )
        return reply

    def _one_by_one(self, commands: list[str], phases: list[str]) -> list[Reply]:
        """Without PIPELINING: stop at a refused MAIL, skip DATA if no recipient was taken."""
        replies = [self._closing_check(self._command(commands[0], phases[0]), phases[0])]
        if 200 <= replies[0].code < 300:
            for cmd, phase in zip(commands[1:], phases[1:], strict=True):
                if cmd == "DATA" and not any(200 <= r.code < 300 for r in replies[1:]):
                    break
                replies.append(self._closing_check(self._command(cmd, phase), phase))
        return replies

    def _after_failed_envelope(self, data_reply: Reply | None) -> None:
        # RFC 2920 section 3.1: if DATA was pipelined and still got 354 although the
        # transaction failed, the client must send the end of data before going on.
        if data_reply is not None and data_reply.code == SMTPStatus.START_INPUT:
            try:
                self._write_lines(["."], "data")
                self._read("data")
            except SMTPError:
                return
        self._reset_after_failure()

    def _stream_data(self, blocks: Iterator[bytes], encoder: DataEncoder, deadline: float) -> Reply:
        """DATA body: CRLF-normalised, dot-stuffed, in large writes, ending in CRLF.CRLF."""
        pending: list[bytes] = []
        pending_size = 0
        for raw in blocks:
            out = encoder.feed(raw)
            if out:
                pending.append(out)
                pending_size += len(out)
            if pending_size >= BLOCK_SIZE:
                self._write_data(b"".join(pending), deadline)
                pending, pending_size = [], 0
        pending.append(encoder.finish())
        pending.append(b".\r\n")
        self._log(f"<{encoder.size} bytes of message data>")
        self._log(".")
        upcoming = self._upcoming()
        self._end_of_data()
        self._write_data(b"".join(pending), deadline)
        if upcoming is not None:
            self._send_ahead(upcoming)
        return self._read_final()

    def _upcoming(self) -> Envelope | None:
        """``next_envelope_hook``, called right before the end of a message's data: the
        :class:`Envelope` it returns (made by :meth:`envelope`) goes out right behind the end
        of the data, in the same round trip (RFC 2920 section 3.1: the message's content may
        begin a command group and DATA end it). The next :meth:`send` of that same envelope
        reads its replies instead of writing it; anything else closes the connection first
        (a DATA answered 354 waits for data that must never be ended by accident). Only
        where the server pipelines, on the DATA path: with CHUNKING a message that fits one
        chunk takes one round trip already."""
        caps = self.capabilities
        if self.next_envelope_hook is None or caps is None or not caps.pipelining:
            return None
        return self.next_envelope_hook()

    def _send_ahead(self, env: Envelope) -> None:
        """Write the next message's MAIL, RCPTs and DATA right behind the end of this one's
        data (already written). Not through ``_io``: a failure here is after the end of the
        data, so it must not make this message look failed; the final reply read next tells
        what became of the connection, and an envelope not written whole is never used."""
        commands = [*env.commands, "DATA"]
        self._ahead = _Ahead(env, usable=False)
        assert self._sock is not None
        try:
            self._sock.sendall("".join(f"{line}\r\n" for line in commands).encode("utf-8"))
        except OSError:
            return
        self._ahead.usable = True

    def _stream_bdat(
        self,
        blocks: Iterator[bytes],
        encoder: DataEncoder,
        first: bytes,
        deadline: float,
        pipelining: bool,
    ) -> Reply:
        """BDAT chunks (RFC 3030): no dot-stuffing; the last chunk is ``BDAT n LAST``."""
        chunk = first
        unread = 0
        for raw in blocks:
            # A full chunk goes out only once more input exists: the last one must be LAST.
            if len(chunk) >= BLOCK_SIZE:
                self._log(f"BDAT {len(chunk)}")
                self._write_data(b"BDAT %d\r\n" % len(chunk) + chunk, deadline)
                chunk = b""
                unread += 1
                if not pipelining or unread >= _MAX_UNREAD_BDAT:
                    reply = self._read_bdat_replies(unread)
                    unread = 0
                    if reply is not None:
                        return reply
            chunk += encoder.feed(raw)
        chunk += encoder.finish()
        self._log(f"BDAT {len(chunk)} LAST")
        self._log(f"<{encoder.size} bytes of message data>")
        self._end_of_data()
        self._write_data(b"BDAT %d LAST\r\n" % len(chunk) + chunk, deadline)
        failed = self._read_bdat_replies(unread, after_end=True)
        if failed is not None and not self.is_connected:
            return failed
        final = self._read_final()
        return failed if failed is not None else final

    def _read_bdat_replies(self, count: int, *, after_end: bool = False) -> Reply | None:
        """Read ``count`` intermediate BDAT replies; return the first failure, if any."""
        failed = None
        for _ in range(count):
            if failed is not None and not self.is_connected:
                break
            reply = self._read_final() if after_end else self._read("data")
            if failed is None and not (200 <= reply.code < 300):
                failed = reply
        return failed

    def _end_of_data(self) -> None:
        if self.end_of_data_hook is not None:
            self.end_of_data_hook()

    def _read_final(self) -> Reply:
        """Read a reply after the end of the data: a lost connection now means the server
        may or may not have taken the message, which must never look like a plain failure."""
        try:
            # RFC 5321 section 4.5.3.2.6: servers may take minutes to accept the data.
            return self._read("after-data", patience=self.data_timeout)
        except (SMTPServerDisconnected, SMTPTimeoutError, SMTPProtocolError) as exc:
            self.close()
            if exc.reply is not None:
                raise  # a real reply (421): the server said no
            raise SMTPOutcomeUnknown(
                "The connection was lost after the whole message was sent and before the "
                "server confirmed it; the server may or may not have accepted it. Check the "
                f"recipient's mailbox before sending it again. ({exc.message})",
                reply=exc.reply,
            ) from exc

    def _write_data(self, data: bytes, deadline: float) -> None:
        """Write message data: each write within the command timeout, all of them within
        the data timeout. A failed write means the end of the data never left the client,
        so it is still a definite failure (phase ``data``)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout("data")
        assert self._sock is not None
        wanted = self.command_timeout if remaining > self.command_timeout else remaining
        if wanted != self._current_timeout:
            self._set_timeout(wanted)
        with self._io("data"):
            self._sock.sendall(data)

    def _set_timeout(self, timeout: float) -> None:
        # settimeout() costs a system call; messages on a kept connection repeat the same
        # values, so only change it when it differs.
        if timeout == self._current_timeout or self._sock is None:
            return
        if self._kernel_timeouts:
            seconds = int(timeout)
            micros = max(int((timeout - seconds) * 1_000_000), 0 if seconds else 1)
            timeval = struct.pack("@ll", seconds, micros)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        else:
            self._sock.settimeout(timeout)
        self._current_timeout = timeout

    def _data_error(
        self, reply: Reply, result: SendResult, phase: str
    ) -> SMTPDataError | SMTPMessageTooLarge:
        if reply.code == SMTPStatus.MESSAGE_TOO_LARGE or reply.enhanced == "5.3.4":
            limit = self.capabilities.size if self.capabilities else None
            return SMTPMessageTooLarge(
                "The server refused the message because it is too large. Make it smaller.",
                limit=limit,
                reply=reply,
                result=result,
                phase=phase,
            )
        what = (
            "refused to take the message data" if phase == "data" else "did not accept the message"
        )
        return SMTPDataError(f"The server {what}.", reply=reply, result=result, phase=phase)

    def _reset_after_failure(self) -> None:
        """RFC 5321 section 4.1.1.5: RSET after a failed transaction keeps the connection
        usable; if even that fails the connection is closed."""
        if not self.is_connected:
            return
        if self._ahead is not None:
            self.close()  # RSET behind a DATA sent ahead would be data
            return
        try:
            reply = self._command("RSET", "mail")
        except SMTPError:
            self.close()
            return
        if reply.code != SMTPStatus.COMPLETED:
            self.close()

    # ---------------------------------------------------------------- wire helpers

    def _command(self, line: str, phase: str) -> Reply:
        self._write_lines([line], phase)
        return self._read(phase)

    def _write_lines(
        self,
        lines: list[str],
        phase: str,
        *,
        log: list[str] | None = None,
        extra: bytes | None = None,
    ) -> None:
        for line in lines:
            # Defence in depth: every argument was checked already; nothing may ever make
            # one command line become two.
            if "\r" in line or "\n" in line:
                raise SMTPCommandArgumentError(
                    "Refused to send a command containing a line break.", phase=phase
                )
        for entry in log if log is not None else lines:
            self._log(entry)
        data = "".join(f"{line}\r\n" for line in lines).encode("utf-8")
        if extra is not None:
            data += extra
        assert self._sock is not None
        with self._io(phase):
            self._sock.sendall(data)

    def _read(
        self, phase: str, *, timeout: float | None = None, patience: float | None = None
    ) -> Reply:
        """Read one reply within ``timeout`` (default: the command timeout) per receive, or
        keep waiting up to ``patience`` seconds in all."""
        reader = self._reader
        if reader is None:
            raise SMTPServerDisconnected("Not connected to the server.", phase=phase)
        wanted = self.command_timeout if timeout is None else timeout
        if wanted != self._current_timeout:
            self._set_timeout(wanted)
        if patience is None:
            with _IOGuard(self, phase):
                reply = read_reply(reader.readline, phase=phase)
        else:
            reader.patient_until = time.monotonic() + patience
            try:
                with _IOGuard(self, phase):
                    reply = read_reply(reader.readline, phase=phase)
            finally:
                reader.patient_until = None
        self._last_reply = time.monotonic()
        if self.record_transcript:
            self._log_reply(reply)
        if reply.code == 421:
            # The server is closing the transmission channel (RFC 5321 section 3.8).
            self.close()
        return reply

    def _io(self, phase: str) -> _IOGuard:
        """Map socket failures to SMTP errors. Any of them leaves the reply stream out of
        step, so the connection is closed and never reused."""
        return _IOGuard(self, phase)

    def _timeout(self, phase: str) -> SMTPTimeoutError:
        self.close()
        return SMTPTimeoutError(
            f"The server did not answer in time (while in the {phase} phase); the connection "
            "was closed. It will be tried again later.",
            phase=phase,
        )

    # ------------------------------------------------------------------ transcript

    def _log(self, line: str) -> None:
        if self.record_transcript and not self._transcript_full:
            self._append(f"C: {line}")

    def _note(self, line: str) -> None:
        if self.record_transcript and not self._transcript_full:
            self._append(line)

    def _log_reply(self, reply: Reply) -> None:
        if not self.record_transcript or self._transcript_full:
            return
        last = len(reply.lines) - 1
        for i, text in enumerate(reply.lines):
            self._append(f"S: {reply.code}{'-' if i < last else ' '}{text}".rstrip())

    def _append(self, line: str) -> None:
        if len(line) > _TRANSCRIPT_LINE:
            line = line[:_TRANSCRIPT_LINE] + "…"
        if self._transcript_size + len(line) > self.transcript_limit:
            self._transcript_full = True
            self.transcript.append("[transcript truncated]")
            return
        self._transcript_size += len(line) + 1
        self.transcript.append(line)


def _header_end(data: bytes | bytearray, limit: int) -> int:
    """Offset of the blank line ending the header section in ``data[:limit]`` (or the limit
    if none), found without copying ``data``."""
    # The CRLF form first: it is what nearly every message has, and it ends the search for
    # the bare-LF form early (a CRLF message has no "\n\n" at all, so searching for it up
    # to the limit read the whole message: ~90 µs for 100 KB, per message).
    crlf = data.find(b"\n\r\n", 0, limit)
    lf = data.find(b"\n\n", 0, crlf if crlf >= 0 else limit)
    if lf >= 0:
        return lf
    return crlf if crlf >= 0 else min(limit, len(data))
