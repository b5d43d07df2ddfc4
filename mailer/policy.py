"""The delivery policy: the one place where an SMTP outcome becomes a decision.

An outcome is what the client saw — the dialogue ``phase`` it happened in, the server's reply
``code`` and RFC 3463 ``enhanced`` code (when there was a reply) and the client's error
class. :func:`classify` runs it through :data:`RULES`, an ordered table; the first matching
rule decides the :class:`Action` and the plain-words reason the page shows.

The order of the table is the policy (STYLE 5):

1. what the client itself knows (the outcome is unknown, the certificate did not verify,
   the account's settings cannot work) — no reply needed;
2. the enhanced status code (RFC 3463), because it says *why* ("5.7.8 bad credentials")
   where the basic code only says how bad ("535");
3. the basic reply code, for servers that send no enhanced code;
4. fall-backs by phase and by class: 4xx, timeouts and lost connections defer, 5xx fail.

To change the policy, add or move a row in :data:`RULES`; the tests in
``tests/mailer/test_policy.py`` read like the table.

Timing lives here too: :func:`backoff` (Postfix's rule: wait about the message's age,
clamped to ``MAILROOM_MIN_BACKOFF_SECONDS`` … ``MAILROOM_MAX_BACKOFF_SECONDS``),
:func:`expired` (``MAILROOM_MAX_MESSAGE_AGE_SECONDS``) and :func:`throttle_delay` (the
spacing of a throttled account's attempts).

This module reads Django settings lazily and imports nothing from ``mailer.smtp``: errors
are matched by class name along their MRO, so a subclass matches its parent's rules.
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailer.smtp.replies import Reply

__all__ = [
    "NO_ENHANCED",
    "RULES",
    "Action",
    "Decision",
    "Rule",
    "backoff",
    "classify",
    "classify_error",
    "classify_recipient",
    "expired",
    "next_attempt_at",
    "retry_unknown",
    "throttle_delay",
    "with_server_words",
]


class Action(enum.StrEnum):
    DELIVER_OK = "deliver_ok"  # the server took it
    DEFER = "defer"  # try again later (backoff)
    FAIL_MESSAGE = "fail_message"  # permanent for the whole message
    FAIL_RECIPIENT = "fail_recipient"  # permanent for this recipient only
    UNKNOWN = "unknown"  # the server may have it: never resent blindly
    PAUSE_ACCOUNT = "pause_account"  # the account itself is at fault: stop, keep the mail
    THROTTLE_ACCOUNT = "throttle_account"  # the provider asks us to slow down
    SPLIT_RECIPIENTS = "split_recipients"  # too many recipients: the rest in another transaction
    TOO_BIG = "too_big"  # never retried: the server's size limit


# Actions after which the same message is tried again without anyone doing anything.
_AUTOMATIC_RETRY = {Action.DEFER, Action.THROTTLE_ACCOUNT, Action.SPLIT_RECIPIENTS}
# Actions that leave the message (or the recipient) waiting rather than finished.
_WAITING = _AUTOMATIC_RETRY | {Action.PAUSE_ACCOUNT}


#: ``Rule.enhanced`` value meaning "the reply has no enhanced code".
NO_ENHANCED = ""


@dataclass(frozen=True)
class Rule:
    """One row of the policy. Every criterion given must match; an empty one matches all.

    ``enhanced`` is a pattern on the RFC 3463 code (``"5.7.8"``, ``"4.7.*"``), or
    :data:`NO_ENHANCED` for a reply that carries none; ``errors`` are
    class names, matched along the error's MRO; ``reason`` is plain words and may use
    ``{limit}`` (the server's size limit, when known); the server's words are appended.
    """

    name: str
    action: Action
    reason: str
    phases: tuple[str, ...] = ()
    codes: tuple[int, ...] = ()
    code_class: int | None = None  # 2, 4 or 5: the first digit
    enhanced: str | None = None
    errors: tuple[str, ...] = ()

    def matches(self, outcome: _Outcome) -> bool:
        if self.phases and outcome.phase not in self.phases:
            return False
        if self.codes and outcome.code not in self.codes:
            return False
        if self.code_class is not None and (
            outcome.code is None or outcome.code // 100 != self.code_class
        ):
            return False
        if self.enhanced == NO_ENHANCED:
            if outcome.enhanced is not None:
                return False
        elif self.enhanced is not None and (
            outcome.enhanced is None or not fnmatch.fnmatchcase(outcome.enhanced, self.enhanced)
        ):
            return False
        if self.errors and not set(self.errors) & set(outcome.error_classes):
            return False
        return True


@dataclass(frozen=True)
class _Outcome:
    phase: str | None
    code: int | None
    enhanced: str | None
    text: str
    error_classes: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """What to do, and why in plain words (``reason`` is shown to the user as is)."""

    action: Action
    reason: str
    rule: str  # the name of the rule that matched, for logs and tests
    phase: str | None = None
    code: int | None = None
    enhanced: str | None = None
    text: str = ""
    error_class: str | None = None
    limit: int | None = None  # the server's size limit, for TOO_BIG, when known
    plain: str = ""  # ``reason`` without the server's words (shown next to them)

    @property
    def retries_automatically(self) -> bool:
        """True when the message will be tried again without the user doing anything.
        ``unknown`` is retried only when ``MAILROOM_RETRY_UNKNOWN`` says so."""
        if self.action is Action.UNKNOWN:
            return retry_unknown()
        return self.action in _AUTOMATIC_RETRY

    @property
    def waits(self) -> bool:
        """True when the mail stays pending (deferred), False when this is final."""
        return self.action in _WAITING or (self.action is Action.UNKNOWN and retry_unknown())

    @property
    def is_account_fault(self) -> bool:
        return self.action in (Action.PAUSE_ACCOUNT, Action.THROTTLE_ACCOUNT)


_CONNECTION_PHASES = ("connect", "greeting", "ehlo")
_ASK_AGAIN = "Mailroom will try again later."
_RESUME = (
    "Mailroom paused this account so that repeated attempts do not get it locked at the "
    "provider; its mail waits. Saving the fixed settings, or a connection test that "
    "succeeds, resumes it."
)

_BAD_LOGIN = (
    "The server refused the username or password. Update the account's password "
    "(Gmail, iCloud, Yahoo and Fastmail need an app password). " + _RESUME
)
_WEAK_LOGIN = (
    "The server does not allow this login method for the account. Choose another "
    "authentication method (for example XOAUTH2 with a token). " + _RESUME
)
_NEEDS_TLS = (
    "The server requires an encrypted connection to log in. Choose STARTTLS or TLS for "
    "this account. " + _RESUME
)
_TOO_BIG = (
    "The message is larger than the server accepts{limit}. Mailroom will not retry it: "
    "make the attachments smaller or send them as links."
)
_SPLIT = (
    "The server accepts fewer recipients per message; Mailroom sends to the rest in "
    "another transaction."
)
_RCPT_REFUSED = (
    "The server refused this recipient. Check the address; the other recipients are not "
    "affected."
)

#: The policy, in order: the first matching rule decides. See the module docstring.
RULES: tuple[Rule, ...] = (
    # 1. What the client itself knows.
    Rule("outcome-unknown", Action.UNKNOWN,
         "The connection was lost after the whole message was sent but before the server "
         "confirmed it, so the server may already have it. Mailroom does not resend it on its "
         "own (that could deliver it twice): check with a recipient, then resend if needed.",
         errors=("SMTPOutcomeUnknown",)),
    # The account points at an address the operator does not allow: its own settings are
    # at fault, so its mail waits (paused) instead of being retried against it forever.
    Rule("destination-refused", Action.PAUSE_ACCOUNT,
         "Mailroom is not allowed to connect to this server's address (the operator's "
         "destination policy). Check the account's host name, or ask the operator to allow "
         "the server. " + _RESUME,
         errors=("SMTPDestinationRefused",)),
    Rule("certificate", Action.PAUSE_ACCOUNT,
         "The server's certificate could not be verified, so Mailroom did not log in. Check the "
         "host name, or add the server's CA certificate to the account. " + _RESUME,
         errors=("SMTPCertificateError",)),
    Rule("starttls-missing", Action.PAUSE_ACCOUNT,
         "The server does not offer STARTTLS, and Mailroom never sends mail or a password in "
         "plaintext. Choose implicit TLS (usually port 465) or another port. " + _RESUME,
         errors=("SMTPStartTLSNotSupported",)),
    Rule("plaintext-auth", Action.PAUSE_ACCOUNT,
         "Logging in would send the password over an unencrypted connection. Choose STARTTLS "
         "or TLS for this account. " + _RESUME,
         errors=("SMTPPlaintextAuthRefused",)),
    Rule("auth-mechanism", Action.PAUSE_ACCOUNT,
         "The server offers no login method Mailroom can use with this account's settings. "
         "Choose another authentication method. " + _RESUME,
         errors=("SMTPAuthNotSupported",)),
    Rule("too-big-local", Action.TOO_BIG,
         _TOO_BIG,
         errors=("SMTPMessageTooLarge",)),
    Rule("extension-missing", Action.FAIL_MESSAGE,
         "The message needs a feature the server does not offer (international addresses "
         "need SMTPUTF8, 8-bit content needs 8BITMIME). Use plain ASCII addresses or send "
         "through another account.",
         errors=("SMTPNotSupported",)),
    Rule("bad-argument", Action.FAIL_MESSAGE,
         "An address contains a line break or control character, so nothing was sent. Fix the "
         "address and send again.",
         errors=("SMTPCommandArgumentError",)),
    # A 454 to STARTTLS is "TLS not available for now" (RFC 3207), a server hiccup rather
    # than throttling; it must come before the 4.7.x and 454 throttle rows below.
    Rule("starttls-temporary", Action.DEFER,
         "The server could not start TLS right now. " + _ASK_AGAIN,
         phases=("starttls",), code_class=4),
    # 2. RFC 3463 enhanced codes.
    Rule("5.7.8", Action.PAUSE_ACCOUNT,
         _BAD_LOGIN,
         enhanced="5.7.8"),
    Rule("5.7.9", Action.PAUSE_ACCOUNT,
         _WEAK_LOGIN,
         enhanced="5.7.9"),
    Rule("5.7.11", Action.PAUSE_ACCOUNT,
         _NEEDS_TLS,
         enhanced="5.7.11"),
    # RFC 5321 section 4.5.3.1.10: too many recipients; the rest go in another transaction.
    Rule("too-many-recipients", Action.SPLIT_RECIPIENTS,
         _SPLIT,
         phases=("rcpt",), enhanced="[45].5.3"),
    Rule("5.3.4", Action.TOO_BIG,
         _TOO_BIG,
         enhanced="5.3.4"),
    Rule("5.1.1", Action.FAIL_RECIPIENT,
         "The recipient's mailbox does not exist. Check the address for typos; the other "
         "recipients are not affected.",
         phases=("rcpt",), enhanced="5.1.1"),
    Rule("4.7.x", Action.THROTTLE_ACCOUNT,
         "The provider asked Mailroom to slow down (too many messages or connections). "
         "Mailroom spaces out this account's next attempts and tries again later.",
         enhanced="4.7.*"),
    # 3. Basic reply codes (servers without ENHANCEDSTATUSCODES).
    Rule("535", Action.PAUSE_ACCOUNT,
         _BAD_LOGIN,
         codes=(535,)),
    Rule("534", Action.PAUSE_ACCOUNT,
         _WEAK_LOGIN,
         codes=(534,)),
    Rule("538", Action.PAUSE_ACCOUNT,
         _NEEDS_TLS,
         codes=(538,)),
    # RFC 4954: 530 "authentication required" (also "must issue STARTTLS first"): every
    # message from this account would get it, so it is the account that needs fixing.
    Rule("530", Action.PAUSE_ACCOUNT,
         "The server requires a login (or encryption) before it takes mail. Set the account's "
         "username and password, and choose STARTTLS or TLS. " + _RESUME,
         codes=(530,)),
    Rule("421/454", Action.THROTTLE_ACCOUNT,
         "The server is busy or limiting this account (too many messages or connections). "
         "Mailroom spaces out this account's next attempts and tries again later.",
         codes=(421, 454)),
    # RFC 5321 section 4.5.3.1.10: 452 (and, from RFC 821 days, 552) to RCPT means
    # "too many recipients" unless an enhanced code (5.2.2 mailbox full…) said otherwise.
    Rule("452/552-rcpt", Action.SPLIT_RECIPIENTS,
         _SPLIT,
         phases=("rcpt",), codes=(452, 552), enhanced=NO_ENHANCED),
    Rule("552", Action.TOO_BIG,
         _TOO_BIG,
         phases=("mail", "data", "after-data"), codes=(552,)),
    Rule("550-rcpt", Action.FAIL_RECIPIENT,
         _RCPT_REFUSED,
         phases=("rcpt",), codes=(550,)),
    # 4. Fall-backs by phase and class.
    Rule("auth-refused", Action.PAUSE_ACCOUNT,
         "The server refused to log in with this account's settings. Check the username, the "
         "password and the authentication method. " + _RESUME,
         phases=("auth",), code_class=5),
    # Lost connections, timeouts, TLS handshakes and garbled replies are transient.
    Rule("network", Action.DEFER,
         "The connection failed or timed out. " + _ASK_AGAIN,
         errors=("SMTPConnectError", "SMTPServerDisconnected", "SMTPTimeoutError",
                 "SMTPTLSError", "SMTPProtocolError", "OSError")),
    # A refusal before any mail command is the server's state, not the message's (a
    # greeting 554 from the one configured server): wait, do not fail the mail.
    Rule("session-refused", Action.DEFER,
         "The server refused the connection for now. " + _ASK_AGAIN,
         phases=_CONNECTION_PHASES + ("starttls",)),
    Rule("rcpt-transient", Action.DEFER,
         "The server could not take this recipient for now. " + _ASK_AGAIN,
         phases=("rcpt",), code_class=4),
    Rule("rcpt-permanent", Action.FAIL_RECIPIENT,
         _RCPT_REFUSED,
         phases=("rcpt",), code_class=5),
    Rule("transient-reply", Action.DEFER,
         "The server could not take the message for now. " + _ASK_AGAIN, code_class=4),
    Rule("permanent-reply", Action.FAIL_MESSAGE,
         "The server refused the message. Read the server's words below for the reason.",
         code_class=5),
    Rule("accepted", Action.DELIVER_OK, "The server accepted the message.", code_class=2),
)

# When nothing matches (an error class nobody foresaw): wait and retry, never fail blindly.
_DEFAULT = Rule("default", Action.DEFER, "Delivery did not complete. " + _ASK_AGAIN)


def _error_names(error: BaseException | type | str | None) -> tuple[str, ...]:
    if error is None:
        return ()
    if isinstance(error, str):
        return (error,)
    cls = error if isinstance(error, type) else type(error)
    return tuple(c.__name__ for c in cls.__mro__)


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def classify(
    phase: str | None,
    code: int | None = None,
    enhanced: str | None = None,
    text: str = "",
    error: BaseException | type | str | None = None,
    *,
    limit: int | None = None,
) -> Decision:
    """Decide what to do with one outcome.

    ``error`` is the client's exception (or its class, or its class name); ``limit`` is the
    server's size limit in bytes when known (from the error or the capability snapshot).
    """
    outcome = _Outcome(
        phase=phase, code=code, enhanced=enhanced or None, text=text or "",
        error_classes=_error_names(error),
    )
    rule = next((r for r in RULES if r.matches(outcome)), _DEFAULT)
    plain = rule.reason.format(limit=f" ({_mb(limit)})" if limit else "")
    return Decision(
        action=rule.action,
        reason=with_server_words(plain, code, enhanced, text),
        rule=rule.name,
        phase=phase,
        code=code,
        enhanced=outcome.enhanced,
        text=outcome.text,
        error_class=outcome.error_classes[0] if outcome.error_classes else None,
        limit=limit,
        plain=plain,
    )


def with_server_words(plain: str, code: int | None, enhanced: str | None, text: str | None) -> str:
    """``plain`` followed by the server's reply, quoted, when there was one."""
    reply = " ".join(str(p) for p in (code, enhanced, (text or "").replace("\n", " ")) if p)
    return f"{plain} The server said: “{reply}”" if reply else plain


def classify_error(exc: BaseException, *, limit: int | None = None) -> Decision:
    """Decide for a client exception (``mailer.smtp.errors.SMTPError`` or a bare OSError),
    using its ``phase``, its ``reply`` and, for a size refusal, its ``limit``."""
    reply = getattr(exc, "reply", None)
    limit = getattr(exc, "limit", None) or limit
    return classify(
        getattr(exc, "phase", None),
        getattr(reply, "code", None),
        getattr(reply, "enhanced", None),
        getattr(reply, "text", "") or "",
        exc,
        limit=limit,
    )


def classify_recipient(reply: Reply) -> Decision:
    """Decide for one recipient's RCPT reply (``RecipientResult.reply``): accepted,
    deferred, failed, too many recipients, or throttled."""
    return classify("rcpt", reply.code, reply.enhanced, reply.text)


# --- timing ------------------------------------------------------------------------------


def _setting(name: str) -> Any:
    """A delivery setting, read when asked (its default is in ``config/settings.py``, the
    one place for every setting)."""
    from django.conf import settings

    return getattr(settings, name)


def retry_unknown() -> bool:
    """``MAILROOM_RETRY_UNKNOWN``: retry ``unknown`` automatically (a duplicate is preferred
    to a loss). Off by default."""
    return bool(_setting("MAILROOM_RETRY_UNKNOWN"))


def backoff(first_queued_at: datetime, now: datetime) -> timedelta:
    """How long to wait after a transient failure: about the message's age, so the gaps
    double, between ``MAILROOM_MIN_BACKOFF_SECONDS`` and ``MAILROOM_MAX_BACKOFF_SECONDS``
    (Postfix's qmgr rule: 300 s and 4000 s by default)."""
    low = _setting("MAILROOM_MIN_BACKOFF_SECONDS")
    high = _setting("MAILROOM_MAX_BACKOFF_SECONDS")
    age = (now - first_queued_at).total_seconds()
    return timedelta(seconds=min(max(age, low), high))


def expired(first_queued_at: datetime, now: datetime) -> bool:
    """True when a message has waited longer than ``MAILROOM_MAX_MESSAGE_AGE_SECONDS``: its
    next transient failure fails it with the last error."""
    max_age: float = _setting("MAILROOM_MAX_MESSAGE_AGE_SECONDS")
    return (now - first_queued_at).total_seconds() >= max_age


def next_attempt_at(first_queued_at: datetime, now: datetime) -> datetime | None:
    """When to try a deferred message again, or None when it has expired (fail it)."""
    if expired(first_queued_at, now):
        return None
    return now + backoff(first_queued_at, now)


def throttle_delay(recent_throttles: int) -> timedelta:
    """How far apart a throttled account's attempts are spaced.

    ``recent_throttles`` is how many times the provider throttled the account within
    ``MAILROOM_THROTTLE_WINDOW_SECONDS`` (this one included). The spacing starts at
    ``MAILROOM_THROTTLE_SECONDS`` and doubles with each further throttle, up to
    ``MAILROOM_MAX_BACKOFF_SECONDS``: a provider that keeps saying "slow down" is given
    more and more room instead of being hammered until it locks the account.
    """
    base = _setting("MAILROOM_THROTTLE_SECONDS")
    high = _setting("MAILROOM_MAX_BACKOFF_SECONDS")
    doublings = max(recent_throttles - 1, 0)
    # Cap the exponent: 2**20 times any sane base is beyond every maximum already.
    return timedelta(seconds=min(base * 2 ** min(doublings, 20), max(high, base)))


def throttle_window() -> timedelta:
    """How long a throttle is remembered when counting ``recent_throttles``."""
    return timedelta(seconds=_setting("MAILROOM_THROTTLE_WINDOW_SECONDS"))
