"""What happened to a message so far, and what will happen next, in plain words.

One place for it: the message page, the history's rows and ``manage.py outbox`` say what
this module says, and it says only what the outbox will actually do — a retry it names is
scheduled (``next_attempt_at`` set, the account not paused), a recipient it calls waiting
will be tried again, and an action it offers is one the services allow. Pure: it reads the
message, its recipients and its account as given, and queries nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.timesince import timeuntil

from mailer.models import OutboxMessage, Recipient

S = OutboxMessage.Status
R = Recipient.Status


@dataclass(frozen=True)
class Split:
    """The recipients by outcome: ``sent`` (the server took it), ``failed`` (for good: never
    tried again by itself) and ``waiting`` (will be tried again, or waits for the account)."""

    sent: int = 0
    failed: int = 0
    waiting: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.waiting

    @property
    def mixed(self) -> bool:
        return sum(1 for n in (self.sent, self.failed, self.waiting) if n) > 1

    def words(self) -> str:
        """``"2 sent · 1 failed · 1 waiting"`` (the parts that are not zero)."""
        parts = [(self.sent, "sent"), (self.failed, "failed"), (self.waiting, "waiting")]
        return " · ".join(f"{n} {label}" for n, label in parts if n)


def split(statuses: list[str] | dict[str, int]) -> Split:
    """From the recipients' statuses (a list, or counts per status)."""
    counts = statuses if isinstance(statuses, dict) else _count(statuses)
    return Split(
        sent=counts.get(R.ACCEPTED, 0),
        failed=counts.get(R.FAILED, 0),
        waiting=counts.get(R.PENDING, 0) + counts.get(R.DEFERRED, 0),
    )


def _count(statuses: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return counts


@dataclass(frozen=True)
class NextStep:
    """What the outbox will do with the message next."""

    words: str  # one sentence, plain words
    retry_at: datetime | None = None  # a retry that is scheduled (None: none is)
    paused: bool = False  # the account is paused: nothing is tried until it is fixed
    can_retry_now: bool = False  # "Retry now" may be offered
    can_cancel: bool = False


def account_paused(message: OutboxMessage) -> bool:
    account = message.account
    return account is not None and account.paused_at is not None


def next_step(message: OutboxMessage, recipients: list[Recipient],
              now: datetime | None = None) -> NextStep:
    now = now or timezone.now()
    parts = split([r.status for r in recipients])
    account_is_paused = account_paused(message)
    paused = account_is_paused and message.status in (S.QUEUED, S.DEFERRED, S.SCHEDULED)
    status = message.status
    if paused:
        return NextStep(
            "Nothing more will be tried while the account is paused: fix its settings (or "
            "resume it) on the account's page, and the waiting mail goes out then.",
            paused=True, can_cancel=True,
        )
    if status == S.SCHEDULED:
        when = message.scheduled_at or message.next_attempt_at
        held = message.hold_until is not None and message.hold_until > now
        if held and (message.scheduled_at is None or message.scheduled_at <= message.hold_until):
            return NextStep("It goes out in a moment, unless you undo it.")
        return NextStep(f"It goes out at {_local(when)}." if when else "It goes out soon.",
                        can_cancel=True)
    if status == S.QUEUED:
        return NextStep("It goes out as soon as a worker is free.", can_cancel=True)
    if status == S.SENDING:
        return NextStep("It is being handed to the server now.")
    if status == S.DEFERRED:
        due = message.next_attempt_at
        if due is None or due <= now:
            words = "Next attempt: as soon as a worker is free."
        else:
            words = f"Next attempt at {_local(due)} (in {timeuntil(due, now)})."
        if parts.failed:
            words += f" {_failed_words(parts.failed)}"
        return NextStep(words, retry_at=due, can_retry_now=True, can_cancel=True)
    if status == S.SENT:
        if parts.failed:
            return NextStep(
                f"Delivered to the server for {parts.sent} of {parts.total}. "
                f"{_failed_words(parts.failed)}" + _PAUSED_NO_RETRY * account_is_paused,
                can_retry_now=not account_is_paused,
            )
        return NextStep("The server took it for delivery. Nothing more to do.")
    if status == S.FAILED:
        if account_is_paused:
            return NextStep("It will not be tried again by itself." + _PAUSED_NO_RETRY)
        return NextStep("It will not be tried again by itself. Fix what the reason says, then "
                        "Retry now, or edit it as a new draft.", can_retry_now=True)
    if status == S.UNKNOWN:
        return NextStep("Mailroom will not resend it by itself: the server may already have it.")
    if status == S.BOUNCED:
        return _bounced(recipients)
    return NextStep("It will not be sent.")  # cancelled


def _bounced(recipients: list[Recipient]) -> NextStep:
    bounced = sum(r.remote == Recipient.Remote.BOUNCED for r in recipients)
    who = "1 recipient" if bounced == 1 else f"{bounced} recipients"
    return NextStep(
        f"The server took it, but a delivery report came back: it could not be delivered to "
        f"{who} (see below). Mailroom does not send it again by itself; correct the address "
        "and edit it as a new draft to send it again.")


_PAUSED_NO_RETRY = (" The account is paused: once its settings are fixed, it can be retried.")


def _failed_words(n: int) -> str:
    who = "recipient was" if n == 1 else "recipients were"
    return f"{n} {who} refused for good and will not be tried again by itself."


def _local(when: datetime) -> str:
    return timezone.localtime(when).strftime("%Y-%m-%d %H:%M")
