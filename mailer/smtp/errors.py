"""One exception hierarchy for every SMTP failure.

Each error carries the server's reply (when there was one), the ``phase`` of the dialogue in
which it happened and whether it is ``transient``. :func:`is_transient` is the client's own
view of "retry later" versus "give up" (its command-line tool uses it); the outbox decides
with ``mailer.policy``, which reads the class, the phase and the codes (the enhanced code
can make a 5xx an account fault, a 4xx a throttle).

Rule of thumb (RFC 5321 section 4.2.1): 4xx replies, lost connections and timeouts are
transient; 5xx replies and local refusals (bad arguments, missing extensions, untrusted
certificates) are permanent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .replies import Reply, SendResult

__all__ = [
    "PHASES",
    "SMTPAuthNotSupported",
    "SMTPAuthenticationError",
    "SMTPCertificateError",
    "SMTPCommandArgumentError",
    "SMTPDestinationRefused",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPError",
    "SMTPGreetingError",
    "SMTPMessageTooLarge",
    "SMTPNotSupported",
    "SMTPOutcomeUnknown",
    "SMTPPlaintextAuthRefused",
    "SMTPProtocolError",
    "SMTPRecipientsRefused",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SMTPStartTLSNotSupported",
    "SMTPTokenRefused",
    "SMTPTLSError",
    "SMTPTimeoutError",
    "is_transient",
]

PHASES = (
    "connect",
    "greeting",
    "ehlo",
    "starttls",
    "auth",
    "mail",
    "rcpt",
    "data",
    "after-data",
)


class SMTPError(Exception):
    """Base class. ``str()`` is a plain-words explanation followed by the server's reply."""

    #: Class default; ``None`` means "decided by the reply code" (4xx transient, 5xx not).
    default_transient: bool | None = False

    def __init__(
        self,
        message: str,
        *,
        reply: Reply | None = None,
        phase: str = "connect",
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reply = reply
        self.phase = phase
        if transient is None:
            transient = self.default_transient
        if transient is None:
            transient = reply is not None and reply.is_transient
        self.transient: bool = transient

    def __str__(self) -> str:
        if self.reply is None:
            return self.message
        return f"{self.message} The server said: {self.reply}"

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (the outbox stores it, the CLI prints it)."""
        return {
            "error": type(self).__name__,
            "message": str(self),
            "phase": self.phase,
            "transient": self.transient,
            "reply": self.reply.to_dict() if self.reply is not None else None,
        }


class SMTPConnectError(SMTPError, ConnectionError):
    """The server could not be reached: refused, DNS failure, network unreachable."""

    default_transient = True


class SMTPDestinationRefused(SMTPError):
    """The operator's destination policy does not allow a connection to the address the
    server's name resolved to (checked after DNS resolution, before any byte is sent)."""

    default_transient = False


class SMTPServerDisconnected(SMTPError, ConnectionError):
    """The connection was closed or reset before the end of the message data was sent."""

    default_transient = True


class SMTPTimeoutError(SMTPError, TimeoutError):
    """The server did not answer in time. The connection is out of step and was closed."""

    default_transient = True


class SMTPTLSError(SMTPError):
    """The TLS handshake failed (not a certificate problem)."""

    default_transient = True


class SMTPCertificateError(SMTPTLSError):
    """The server's certificate could not be verified. Permanent until the account changes."""

    default_transient = False


class SMTPStartTLSNotSupported(SMTPError):
    """STARTTLS was required but the server does not offer it; nothing was sent in plaintext."""


class SMTPGreetingError(SMTPError):
    """The server refused the session in its greeting (or in EHLO/HELO)."""

    default_transient = None


class SMTPAuthenticationError(SMTPError):
    """The server refused the credentials (535, 534, 538: permanent; 454: transient)."""

    default_transient = None


class SMTPTokenRefused(SMTPAuthenticationError):
    """The server permanently refused an OAuth2 access token (XOAUTH2, OAUTHBEARER).
    ``hint`` is the client's ``auth_hint``: what to change where the token comes from."""

    hint: str = ""


class SMTPAuthNotSupported(SMTPError):
    """The server offers no AUTH mechanism this client can use with these settings."""


class SMTPPlaintextAuthRefused(SMTPError):
    """AUTH would have crossed an unencrypted connection and that was not allowed."""


class SMTPSenderRefused(SMTPError):
    """MAIL FROM was refused. ``sender`` is the envelope sender."""

    default_transient = None

    def __init__(self, message: str, *, sender: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.sender = sender


class SMTPRecipientsRefused(SMTPError):
    """Every recipient was refused. ``result`` names each one with its reply."""

    def __init__(self, message: str, *, result: SendResult, **kwargs: object) -> None:
        kwargs.setdefault(
            "transient", bool(result.recipients) and all(r.transient for r in result.recipients)
        )
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.result = result


class SMTPDataError(SMTPError):
    """DATA/BDAT was refused or the final reply after the data was not 2xx. ``result`` is set."""

    default_transient = None

    def __init__(self, message: str, *, result: SendResult | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.result = result


class SMTPMessageTooLarge(SMTPError):
    """The message is larger than the server accepts (SIZE pre-check or a 552 reply).

    ``limit`` is the server's SIZE when known; ``result`` is set when the refusal came
    after the envelope (a 552 at or after the data)."""

    default_transient = False

    def __init__(
        self,
        message: str,
        *,
        limit: int | None = None,
        result: SendResult | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.limit = limit
        self.result = result


class SMTPNotSupported(SMTPError):
    """The message needs an extension (SMTPUTF8, 8BITMIME) that the server does not offer."""


class SMTPProtocolError(SMTPError):
    """The server's reply was malformed, endless or too large (or otherwise out of protocol)."""

    default_transient = True


class SMTPOutcomeUnknown(SMTPError):
    """The connection was lost after the end of the data was sent and before the final reply.

    The server may have accepted the message; it must never be resent blindly.
    """

    def __init__(self, message: str, **kwargs: object) -> None:
        kwargs["transient"] = False
        kwargs.setdefault("phase", "after-data")
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class SMTPCommandArgumentError(SMTPError, ValueError):
    """A command argument contained CR, LF or another control character; nothing was sent."""


def is_transient(exc: BaseException) -> bool:
    """Return True when the failure is worth retrying later, False when it is permanent.

    ``SMTPOutcomeUnknown`` is not transient: the message may already have been delivered.
    Bare network errors (``OSError``, which includes DNS failures and timeouts) are transient.
    """
    if isinstance(exc, SMTPError):
        return exc.transient
    return isinstance(exc, OSError)
