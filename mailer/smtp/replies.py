"""Server replies: strict, bounded parsing (RFC 5321 section 4.2) and the results of a send.

Pure code: :func:`read_reply` pulls lines through a ``readline(limit)`` callable and never
touches a socket itself, so it can be tested (and fuzzed) on plain bytes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import SMTPError, SMTPProtocolError, SMTPServerDisconnected

__all__ = [
    "MAX_LINE_LENGTH",
    "MAX_REPLY_LINES",
    "MAX_REPLY_SIZE",
    "RecipientResult",
    "Reply",
    "SMTPStatus",
    "SendResult",
    "parse_reply_lines",
    "read_reply",
]

# RFC 5321 section 4.5.3.1.5 caps a reply line at 512 octets; real servers (long EHLO
# keyword lists, verbose rejections) go beyond it, so allow some slack but stay bounded.
MAX_LINE_LENGTH = 2048
# A hostile server must not be able to make us read forever or hold unbounded memory.
MAX_REPLY_LINES = 100
MAX_REPLY_SIZE = 64 * 1024

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: +|$)")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class SMTPStatus(enum.IntEnum):
    """Reply codes this package names (RFC 5321, 3207, 4954, 1870)."""

    SYSTEM_STATUS = 211
    HELP = 214
    READY = 220
    CLOSING = 221
    AUTH_SUCCESSFUL = 235
    COMPLETED = 250
    WILL_FORWARD = 251
    CANNOT_VRFY = 252
    AUTH_CONTINUE = 334
    START_INPUT = 354
    NOT_AVAILABLE = 421
    MAILBOX_UNAVAILABLE_TRANSIENT = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    TEMP_AUTH_FAILURE = 454
    SYNTAX_ERROR = 500
    PARAMETER_SYNTAX_ERROR = 501
    COMMAND_NOT_IMPLEMENTED = 502
    BAD_SEQUENCE = 503
    PARAMETER_NOT_IMPLEMENTED = 504
    AUTH_REQUIRED = 530
    AUTH_TOO_WEAK = 534
    AUTH_FAILED = 535
    ENCRYPTION_REQUIRED = 538
    MAILBOX_UNAVAILABLE = 550
    USER_NOT_LOCAL = 551
    MESSAGE_TOO_LARGE = 552
    MAILBOX_NAME_INVALID = 553
    TRANSACTION_FAILED = 554
    PARAMETERS_NOT_RECOGNIZED = 555


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) server reply.

    ``lines`` are the raw texts after the code; ``text`` is them joined with ``"\\n"`` with the
    enhanced status code (RFC 3463) stripped from each line; ``enhanced`` is ``"x.y.z"``.
    """

    code: int
    enhanced: str | None = None
    text: str = ""
    lines: tuple[str, ...] = ()

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        if self.text:
            parts.append(self.text.replace("\n", " "))
        return " ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "enhanced": self.enhanced,
            "text": self.text,
            "lines": list(self.lines),
        }

    @classmethod
    def from_lines(cls, code: int, lines: list[str] | tuple[str, ...]) -> Reply:
        """Build a reply from its code and raw line texts, extracting the enhanced code."""
        lines = tuple(lines)
        first = lines[0] if lines else ""
        enhanced = None
        start = 0  # where the text after the first line's enhanced code begins
        # The class digit of an enhanced code must equal the reply's first digit (RFC 3463
        # section 2 / RFC 2034); otherwise "250 2.0" style text is left alone. The cheap
        # character test first: this runs for every reply of every message.
        if first[1:2] == "." and first[:1] == str(code)[0]:
            match = _ENHANCED.match(first)
            if match:
                enhanced = ".".join(match.groups())
                start = match.end()
        if enhanced is None:
            return cls(code, None, "\n".join(lines), lines)
        if len(lines) == 1:
            return cls(code, enhanced, first[start:], lines)
        texts = []
        for line in lines:
            if line.startswith(enhanced):
                m = _ENHANCED.match(line)
                if m and ".".join(m.groups()) == enhanced:
                    line = line[m.end() :]
            texts.append(line)
        return cls(code, enhanced, "\n".join(texts), lines)


def _preview(raw: bytes) -> str:
    return repr(raw[:80]) + ("…" if len(raw) > 80 else "")


def parse_reply_lines(raw_lines: list[bytes], *, phase: str = "connect") -> Reply:
    """Parse a complete reply given as its raw lines (each ending in LF)."""
    it = iter(raw_lines)
    return read_reply(lambda limit: next(it, b""), phase=phase)


def read_reply(
    readline: Callable[[int], bytes],
    *,
    phase: str = "connect",
    max_line: int = MAX_LINE_LENGTH,
    max_lines: int = MAX_REPLY_LINES,
    max_size: int = MAX_REPLY_SIZE,
) -> Reply:
    """Read one reply through ``readline(limit)`` (which returns at most ``limit`` bytes,
    ending in ``\\n`` unless the line is too long or the stream ended, ``b""`` at EOF).

    Raises :class:`SMTPServerDisconnected` at end of stream and :class:`SMTPProtocolError` for
    a malformed, too long (line, line count or total size) or inconsistent reply.
    """
    code: int | None = None
    lines: list[str] = []
    total = 0
    while True:
        raw = readline(max_line + 1)
        if raw[-1:] != b"\n":
            raise _unterminated(raw, max_line, phase)
        total += len(raw)
        if total > max_size or len(lines) >= max_lines:
            raise SMTPProtocolError(
                f"The server sent a reply longer than {max_lines} lines or {max_size} bytes; "
                "it is not behaving like an SMTP server.",
                phase=phase,
            )
        line_code, more, text = _parse_line(raw, phase)
        if code is None:
            code = line_code
        elif line_code != code:
            raise SMTPProtocolError(
                f"The server mixed reply codes {code} and {line_code} in one reply.",
                phase=phase,
            )
        lines.append(text)
        if not more:
            return Reply.from_lines(code, lines)


def _unterminated(raw: bytes, max_line: int, phase: str) -> SMTPError:
    """The error for a line that does not end in LF: end of stream, or a line too long."""
    if not raw:
        return SMTPServerDisconnected("The server closed the connection unexpectedly.", phase=phase)
    if len(raw) > max_line:
        return SMTPProtocolError(
            f"The server sent a reply line longer than {max_line} bytes; "
            "it is not behaving like an SMTP server.",
            phase=phase,
        )
    return SMTPServerDisconnected(
        "The server closed the connection in the middle of a reply.", phase=phase
    )


def _parse_line(raw: bytes, phase: str) -> tuple[int, bool, str]:
    """One reply line (ending in LF) → (code, whether more lines follow, text).

    Reply-line = *( Reply-code "-" [ textstring ] CRLF )
                 Reply-code [ SP textstring ] CRLF         (RFC 5321 section 4.2)
    """
    end = len(raw) - (2 if raw[-2:-1] == b"\r" else 1)
    head = raw[:3]
    if not head.isdigit() or raw[0] not in b"2345" or end < 3:
        if phase == "greeting":
            # Not a mail server at all (SSH, HTTP, Redis, a database): say so without
            # echoing its banner, which would make a probe of internal services out of
            # the connection check.
            raise SMTPProtocolError(
                "The server did not answer like a mail server. Check the host and port "
                "point at an SMTP server (mail submission is usually port 587 or 465).",
                phase=phase,
            )
        raise SMTPProtocolError(
            f"The server sent something that is not an SMTP reply: {_preview(raw)}. "
            "Check the host and port point at an SMTP server.",
            phase=phase,
        )
    sep = raw[3:4]
    if end > 3 and sep != b" " and sep != b"-":
        raise SMTPProtocolError(
            f"The server sent a malformed SMTP reply line: {_preview(raw)}.", phase=phase
        )
    body = raw[4:end]
    text = body.decode("utf-8", errors="replace")
    if _CONTROL_BYTES.search(body):
        # No control characters may travel on into transcripts, logs or pages.
        text = _CONTROL.sub("\ufffd", text)
    return int(head), sep == b"-" and end > 3, text


@dataclass
class RecipientResult:
    """What the server said about one envelope recipient."""

    address: str
    accepted: bool
    reply: Reply

    @property
    def transient(self) -> bool:
        """True when the recipient was refused with a 4xx (worth retrying later)."""
        return not self.accepted and self.reply.is_transient

    def to_dict(self) -> dict[str, object]:
        return {
            "address": self.address,
            "accepted": self.accepted,
            "code": self.reply.code,
            "enhanced": self.reply.enhanced,
            "text": self.reply.text,
            "transient": self.transient,
        }


@dataclass
class SendResult:
    """The outcome of one transaction: every recipient in envelope order, and the data reply."""

    recipients: list[RecipientResult] = field(default_factory=list)
    data_reply: Reply | None = None

    @property
    def accepted(self) -> list[str]:
        return [r.address for r in self.recipients if r.accepted]

    @property
    def rejected(self) -> dict[str, RecipientResult]:
        return {r.address: r for r in self.recipients if not r.accepted}

    @property
    def delivered(self) -> bool:
        """At least one recipient accepted and a 2xx reply after the data."""
        return (
            bool(self.accepted)
            and self.data_reply is not None
            and 200 <= self.data_reply.code < 300
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "delivered": self.delivered,
            "accepted": self.accepted,
            "rejected": {
                address: {
                    "code": r.reply.code,
                    "enhanced": r.reply.enhanced,
                    "text": r.reply.text,
                    "transient": r.transient,
                }
                for address, r in self.rejected.items()
            },
            "recipients": [r.to_dict() for r in self.recipients],
            "data_reply": self.data_reply.to_dict() if self.data_reply is not None else None,
        }
