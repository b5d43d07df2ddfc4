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
:func:`next_try`, :func:`expired` (``MAILROOM_MAX_MESSAGE_AGE_SECONDS``) and
:func:`throttle_delay` (the spacing of a throttled account's attempts).

And what happens after the reply: :func:`after_reply` takes one attempt's decision and
per-recipient replies with the recipients' states before it, and says what every recipient,
the message, the attempt and the account become (a pure function; delivery writes what it
says). ``tests/mailer/test_policy_after_reply.py`` reads like a table of it.

This module reads Django settings lazily and imports nothing from ``mailer.smtp``: errors
are matched by class name along their MRO, so a subclass matches its parent's rules.
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass, replace
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
    "classify_attempt_error",
    "report_reason",
    "classify_error",
    "classify_recipient",
    "expired",
    "next_try",
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
_TOKEN_HINT = (
    "SMTP AUTH with OAuth2 is probably turned off for this mailbox, or Mailroom's app lacks "
    "the permission to send mail: turn it on at the provider (or ask its administrator), "
    "then reconnect."
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
    # An account signed in with a provider (mailer.oauth.tokens): no token, no login.
    Rule("oauth-revoked", Action.PAUSE_ACCOUNT,
         "The provider no longer accepts Mailroom's sign-in for this account (access was "
         "revoked, the password changed or consent was withdrawn). Click “Reconnect” on the "
         "account page and sign in again; the account's mail waits until then.",
         errors=("GrantRevoked",)),
    Rule("oauth-client", Action.PAUSE_ACCOUNT,
         "The provider refused Mailroom's own registration (its client id or secret), or "
         "sign-in with it is no longer set up. Ask the operator to check Mailroom's OAuth "
         "settings; the account's mail waits until then.",
         errors=("ClientRejected",)),
    Rule("oauth-unavailable", Action.DEFER,
         "The provider's sign-in service did not answer properly, so Mailroom could not "
         "renew the account's access. " + _ASK_AGAIN,
         errors=("ProviderUnavailable",)),
    # A fresh token the mail server refuses: the sign-in works, the mailbox may not use it
    # for SMTP (Microsoft 365 with SMTP AUTH off, a Workspace that forbids it).
    Rule("oauth-smtp-refused", Action.PAUSE_ACCOUNT,
         "The provider renewed the sign-in, but the mail server refused its token. {hint} "
         + _RESUME,
         errors=("SMTPTokenRefused",)),
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
    plain = rule.reason.format(
        limit=f" ({_mb(limit)})" if limit else "",
        hint=getattr(error, "hint", "") or _TOKEN_HINT,
    )
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


def classify_attempt_error(exc: BaseException, *, limit: int | None = None) -> Decision:
    """:func:`classify_error` for a delivery attempt: where ``MAILROOM_RETRY_UNKNOWN`` prefers
    a possible duplicate to a loss, an unknown outcome is retried like a deferral."""
    decision = classify_error(exc, limit=limit)
    if decision.action is Action.UNKNOWN and retry_unknown():
        return replace(decision, action=Action.DEFER)
    return decision


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


def next_try(first_queued_at: datetime, now: datetime) -> datetime:
    """When to try a deferred message again: :func:`backoff` from now, but never past the
    maximum age (the try at that time is the last one; :func:`expired` then fails it)."""
    at = now + backoff(first_queued_at, now)
    give_up = first_queued_at + timedelta(seconds=_setting("MAILROOM_MAX_MESSAGE_AGE_SECONDS"))
    return min(at, max(give_up, now))


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


# --- after the reply: what each recipient, the message and the account become ------------
#
# Delivery hands over what one attempt learned (the message-level decision after an error,
# and each recipient's reply) with the state before it; :func:`after_reply` says what is
# written. It reads nothing and writes nothing: ``mailer.delivery.recording`` writes it.
#
# For example, a 451 to one of three recipients (the other two accepted): that recipient
# is ``deferred`` (rule "rcpt-transient"), the two are ``accepted``; the message is
# ``deferred`` with its next try at :func:`next_try` (about its age, Postfix's rule), the
# attempt is ``partial``, and the next try goes to the deferred recipient only. Had the
# message been older than ``MAILROOM_MAX_MESSAGE_AGE_SECONDS``, that recipient would be
# ``failed`` ("Gave up after …") and the message ``sent`` (to the other two).


class RecipientStatus(enum.StrEnum):
    """A recipient's state (the values of ``Recipient.Status``)."""

    PENDING = "pending"  # not tried yet, or to be tried in another transaction
    ACCEPTED = "accepted"
    DEFERRED = "deferred"  # waits for the next try
    FAILED = "failed"


class MessageStatus(enum.StrEnum):
    """What a message becomes after an attempt (values of ``OutboxMessage.Status``)."""

    SENT = "sent"  # every recipient has an answer, and at least one accepted it
    FAILED = "failed"
    DEFERRED = "deferred"  # some recipients wait for the next try
    UNKNOWN = "unknown"  # the server may have it: never resent blindly


class AttemptOutcome(enum.StrEnum):
    """How an attempt ended (values of ``DeliveryAttempt.Outcome``)."""

    SENT = "sent"
    PARTIAL = "partial"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNKNOWN = "unknown"
    PAUSED = "paused"
    THROTTLED = "throttled"


#: What a recipient's action makes of its row.
RECIPIENT_STATUS: dict[Action, RecipientStatus] = {
    Action.DELIVER_OK: RecipientStatus.ACCEPTED,
    Action.DEFER: RecipientStatus.DEFERRED,
    Action.THROTTLE_ACCOUNT: RecipientStatus.DEFERRED,
    Action.PAUSE_ACCOUNT: RecipientStatus.DEFERRED,
    Action.SPLIT_RECIPIENTS: RecipientStatus.PENDING,  # the rest go in another transaction
    Action.UNKNOWN: RecipientStatus.PENDING,
    Action.FAIL_RECIPIENT: RecipientStatus.FAILED,
    Action.FAIL_MESSAGE: RecipientStatus.FAILED,
    Action.TOO_BIG: RecipientStatus.FAILED,
}

_WAITING_RECIPIENT = (RecipientStatus.PENDING, RecipientStatus.DEFERRED)


@dataclass(frozen=True)
class RecipientReply:
    """What one attempt says about one recipient: its new status, the server's reply (code,
    enhanced code, its words) and the plain-words ``reason`` shown beside them."""

    status: RecipientStatus
    code: int | None = None
    enhanced: str = ""
    text: str = ""
    reason: str = ""
    action: Action | None = None  # the recipient's own decision, when it had its own reply


def accepted(reply: Reply) -> RecipientReply:
    """A recipient the server took (``reply``: the final reply to the data)."""
    return RecipientReply(RecipientStatus.ACCEPTED, reply.code, reply.enhanced or "", reply.text)


def refused(reply: Reply) -> RecipientReply:
    """A recipient the server refused at RCPT, with its own reply."""
    decision = classify_recipient(reply)
    return RecipientReply(
        RECIPIENT_STATUS.get(decision.action, RecipientStatus.DEFERRED), reply.code,
        reply.enhanced or "", reply.text, decision.plain, decision.action,
    )


def after_error(
    decision: Decision, pending: list[str], refused_at_rcpt: dict[str, Reply]
) -> dict[str, RecipientReply]:
    """Each pending recipient's reply when the attempt ended in an error (``decision``):
    the error's, except for those refused at RCPT with their own reply."""
    status = RECIPIENT_STATUS.get(decision.action, RecipientStatus.DEFERRED)
    code, enhanced = decision.code, decision.enhanced or ""
    shared = RecipientReply(status, code, enhanced, decision.text, decision.plain)
    return {a: refused(refused_at_rcpt[a]) if a in refused_at_rcpt else shared for a in pending}


def throttled(decision: Decision | None, replies: dict[str, RecipientReply]) -> bool:
    """The provider asked to slow down: for the whole attempt, or at a recipient."""
    if decision is not None and decision.action is Action.THROTTLE_ACCOUNT:
        return True
    return any(r.action is Action.THROTTLE_ACCOUNT for r in replies.values())


@dataclass(frozen=True)
class AfterReply:
    """What :func:`after_reply` decides; ``mailer.delivery.recording`` writes exactly this."""

    status: MessageStatus
    outcome: AttemptOutcome
    recipients: dict[str, RecipientReply]  # the recipients whose row changes, and how
    last_error: str = ""
    next_attempt_at: datetime | None = None
    wait_reason: str = ""
    sent: bool = False  # stamp ``sent_at`` (if not stamped before)
    pause_account: bool = False
    throttle_until: datetime | None = None  # space out the account's attempts until then
    lift_throttle: bool = False  # the provider accepted again: back to full speed
    send_rest_now: bool = False  # the server took only some recipients per transaction


def after_reply(
    *,
    decision: Decision | None,
    replies: dict[str, RecipientReply],
    before: dict[str, RecipientStatus | str],
    first_attempt_at: datetime,
    now: datetime,
    recent_throttles: int = 0,
) -> AfterReply:
    """Decide what one attempt makes of the message.

    ``decision`` is the message-level decision when the attempt ended in an error (else
    None); ``replies`` is this attempt's word on each recipient it tried; ``before`` is
    every recipient's status before the attempt; ``recent_throttles`` is how many times the
    provider throttled the account within :func:`throttle_window` before this attempt
    (asked only when :func:`throttled`).
    """
    status = {a: RecipientStatus(s) for a, s in before.items()}
    status.update({a: r.status for a, r in replies.items() if a in status})
    changed = {a: r for a, r in replies.items() if a in before}
    waiting = [a for a, s in status.items() if s in _WAITING_RECIPIENT]
    took = any(s is RecipientStatus.ACCEPTED for s in status.values())
    took_now = any(r.status is RecipientStatus.ACCEPTED for r in changed.values())
    error = words(decision, replies)
    action = decision.action if decision is not None else None
    if action is Action.UNKNOWN:
        return AfterReply(MessageStatus.UNKNOWN, AttemptOutcome.UNKNOWN, changed, error)
    if action is Action.PAUSE_ACCOUNT:
        return AfterReply(
            MessageStatus.DEFERRED, AttemptOutcome.PAUSED, changed, error, next_attempt_at=now,
            wait_reason="The account is paused. " + error, pause_account=True,
        )
    if waiting and expired(first_attempt_at, now):
        return _give_up(changed, waiting, took, error, first_attempt_at, now)
    if waiting:
        return _wait(changed, error, took_now, first_attempt_at, now,
                     throttled(decision, replies), recent_throttles)
    if took:
        refused_any = any(s is RecipientStatus.FAILED for s in status.values())
        return AfterReply(
            MessageStatus.SENT,
            AttemptOutcome.PARTIAL if refused_any else AttemptOutcome.SENT,
            changed, error if refused_any else "", sent=True, lift_throttle=True,
        )
    return AfterReply(MessageStatus.FAILED, AttemptOutcome.FAILED, changed, error)


def _give_up(
    changed: dict[str, RecipientReply], waiting: list[str], took: bool, error: str,
    first_attempt_at: datetime, now: datetime,
) -> AfterReply:
    """Past the maximum age: every recipient still waiting fails with its last reason."""
    age = age_words(first_attempt_at, now)
    changed = dict(changed)
    for address in waiting:
        last = changed.get(address, RecipientReply(RecipientStatus.DEFERRED))
        changed[address] = replace(
            last, status=RecipientStatus.FAILED, reason=f"Gave up after {age}: {last.reason}"
        )
    return AfterReply(
        MessageStatus.SENT if took else MessageStatus.FAILED,
        AttemptOutcome.PARTIAL if took else AttemptOutcome.FAILED,
        changed, f"Gave up after {age}: {error}", sent=took,
    )


def _wait(
    changed: dict[str, RecipientReply], error: str, took_now: bool,
    first_attempt_at: datetime, now: datetime, slow_down: bool, recent: int,
) -> AfterReply:
    """Some recipients wait: when their next try is, and whether the account slows down."""
    split = any(r.action is Action.SPLIT_RECIPIENTS for r in changed.values())
    send_rest_now = split and took_now and not slow_down
    at = now if send_rest_now else next_try(first_attempt_at, now)
    until = now + throttle_delay(recent + 1) if slow_down else None
    if until is not None:
        at = max(at, until)
    if slow_down:
        outcome = AttemptOutcome.THROTTLED
    else:
        outcome = AttemptOutcome.PARTIAL if took_now else AttemptOutcome.DEFERRED
    return AfterReply(
        MessageStatus.DEFERRED, outcome, changed, error, next_attempt_at=at,
        wait_reason="Waiting to retry: " + error, throttle_until=until,
        send_rest_now=send_rest_now,
    )


def words(decision: Decision | None, replies: dict[str, RecipientReply]) -> str:
    """The message's error in plain words, with the server's: recipients refused with their
    own replies say more than the error does (some of them, or all: then the error itself
    carries no reply)."""
    if decision is not None and decision.code is not None:
        return decision.reason[:5000]
    own = [
        f"{a}: {with_server_words(r.reason, r.code, r.enhanced, r.text)}"
        for a, r in replies.items()
        if r.status in (RecipientStatus.FAILED, RecipientStatus.DEFERRED)
        and (r.code is not None or decision is None)
    ]
    if own or decision is None:
        return "; ".join(own)[:5000]
    return decision.reason[:5000]


def age_words(first_queued_at: datetime, now: datetime) -> str:
    """How long a message has waited, in words ("3 hour(s)")."""
    secs = int((now - first_queued_at).total_seconds())
    if secs >= 86400:
        return f"{secs // 86400} day(s)"
    if secs >= 3600:
        return f"{secs // 3600} hour(s)"
    return f"{max(secs // 60, 0)} minute(s)"


# --- past the first hop: what a delivery report means (mailer.imap.bounces) ---------------

#: RFC 3463 subjects and details of a permanent failure reported later, most specific first.
_BOUNCE_WORDS = (
    ("5.1.1", "the address does not exist there. Check it for typos"),
    ("5.1.", "the address is not valid there. Check it"),
    ("5.2.2", "the recipient's mailbox is full"),
    ("5.2.", "the recipient's mailbox does not take mail at the moment"),
    ("5.3.4", "the message is too large for it. Send a smaller one, or a link"),
    ("5.4.", "the recipient's mail server could not be reached on the way"),
    ("5.7.", "its policy refused the message (a spam filter or a check of the sender)"),
)


def report_reason(state: str, status: str) -> str:
    """The plain words beside a recipient's state from a delivery report (``state``:
    bounced, delayed or delivered; ``status``: the report's enhanced code, e.g. 5.1.1)."""
    if state == "delivered":
        return "The recipient's server reports that the message was delivered."
    if state == "delayed":
        return ("The message has not reached the recipient yet: a server on the way keeps "
                "trying. This is a warning, not a failure; a further report follows if it "
                "gives up.")
    detail = next((words for prefix, words in _BOUNCE_WORDS if status.startswith(prefix)),
                  "it gave up on the message")
    return (f"Your server took the message, but the recipient's side could not deliver it: "
            f"{detail}. Mailroom does not send it again by itself.")
