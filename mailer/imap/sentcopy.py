"""The copy of each accepted message in its account's Sent folder.

Which messages: those of an account whose IMAP side saves to Sent, with at least one
recipient accepted, tried after IMAP was set up. The worker that delivered them asks for a
pass at once (:func:`wanted_after`); beat's pass (:func:`save_due`) finds them again each
time (new ones, retries whose time has come, copies whose worker died), so a
lost wake-up or a crash only delays a copy. Each copy is one ``SentCopy`` row, claimed
with a lease by one worker at a time.

What is saved: the exact frozen bytes that went to the server, with a ``Bcc:`` line for
the Bcc recipients on top, as mail programs keep it (the bytes on the wire never had it),
flagged \\Seen. Exactly once: before each APPEND the folder is searched for the
Message-ID, so an APPEND whose outcome was lost (a dropped connection, a worker killed
before it recorded the result) is found, not repeated.

A failure is recorded in plain words with the server's own, retried with backoff (one
minute, doubling, at most an hour; ``MAILROOM_SENT_COPY_ATTEMPTS`` tries), and never
touches the message's delivery state.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db.models import F, Q
from django.utils import timezone

from mailer.imap import session
from mailer.models import DeliveryAttempt, OutboxMessage, Recipient, SentCopy

log = logging.getLogger("mailer.imap")

__all__ = ["any_due", "copy_bytes", "save", "save_due", "wanted_after"]

Status = SentCopy.Status
Outcome = DeliveryAttempt.Outcome


def _candidates(limit: int) -> list[int]:
    now = timezone.now()
    new = (OutboxMessage.objects.filter(
        account__imap__save_to_sent=True, sent_copy__isnull=True,
        recipients__status=Recipient.Status.ACCEPTED,
        last_attempt_at__gte=F("account__imap__enabled_at"),
    ).values_list("pk", flat=True).distinct().order_by("pk")[:limit])
    again = SentCopy.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        status=Status.PENDING,
    ).values_list("message_id", flat=True)[:limit]
    return sorted({*new, *again})


def any_due() -> bool:
    """Whether beat's pass has a copy to save (the sweep asks, ``mailer.tasks.sweep``)."""
    return bool(_candidates(1))


def wanted_after(message_id: int, outcomes: list[str]) -> bool:
    """After a worker's run of deliveries (one account's, ``delivery.drain``): whether a
    copy is now due, so that beat's pass need not be waited for. One query per run, none
    when nothing was accepted."""
    if not any(o in (Outcome.SENT, Outcome.PARTIAL) for o in outcomes):
        return False
    return OutboxMessage.objects.filter(pk=message_id,
                                        account__imap__save_to_sent=True).exists()


def save_due(limit: int = 200) -> int:
    """Beat's pass: save every copy that is due. Returns how many were saved."""
    return sum(save(pk) == Status.SAVED for pk in _candidates(limit))


def copy_bytes(message: OutboxMessage) -> bytes:
    """What goes into the Sent folder: the frozen bytes, a Bcc line on top when there
    were Bcc recipients."""
    with message.eml.open("rb") as fh:
        raw = fh.read()
    bcc = list(message.recipients.filter(kind=Recipient.Kind.BCC).values_list("address",
                                                                            flat=True))
    if not bcc:
        return raw
    return b"Bcc: " + ", ".join(bcc).encode("utf-8") + b"\r\n" + raw


def _claim(message_id: int) -> SentCopy | None:
    try:
        SentCopy.objects.get_or_create(message_id=message_id)
    except IntegrityError:  # another worker created it a moment ago
        pass
    now = timezone.now()
    lease = now + timedelta(seconds=3 * float(settings.MAILROOM_IMAP_TIMEOUT))
    taken = SentCopy.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        message_id=message_id, status=Status.PENDING,
    ).update(claimed_until=lease, attempts=F("attempts") + 1)
    return SentCopy.objects.get(message_id=message_id) if taken else None


def save(message_id: int) -> str | None:
    """Save one message's copy (if due and not taken by another worker); returns the
    copy's status after the try, or None when there was nothing to do."""
    copy = _claim(message_id)
    if copy is None:
        return None
    message = OutboxMessage.objects.select_related("account__imap").get(pk=message_id)
    account = message.account
    try:
        with session.open_session(account) as client:
            folder, _names = session.find_sent(client, account.imap.sent_folder)
            if folder is None:
                raise session.ImapError(
                    "Mailroom found no Sent folder on the IMAP server. Choose one on the "
                    "account's IMAP settings.", transient=False)
            how = session.append_once(client, folder, copy_bytes(message), message.message_id)
    except session.ImapError as exc:
        return _failed(copy, exc)
    now = timezone.now()
    SentCopy.objects.filter(pk=copy.pk).update(
        status=Status.SAVED, folder=folder, saved_at=now, claimed_until=None,
        next_attempt_at=None,
        detail=f"Saved in “{folder}”." + (" (It was already there.)" if how == "found" else ""),
    )
    log.info("sent copy message=%s folder=%s %s", message_id, folder, how)
    return Status.SAVED


def _failed(copy: SentCopy, exc: session.ImapError) -> str:
    words = str(exc) + (f" The server said: “{exc.server}”" if exc.server else "")
    if exc.transient and copy.attempts < int(settings.MAILROOM_SENT_COPY_ATTEMPTS):
        wait = min(3600, 60 * 2 ** (copy.attempts - 1))
        SentCopy.objects.filter(pk=copy.pk).update(
            detail=words, claimed_until=None,
            next_attempt_at=timezone.now() + timedelta(seconds=wait))
        return Status.PENDING
    SentCopy.objects.filter(pk=copy.pk).update(status=Status.FAILED, detail=words,
                                               claimed_until=None, next_attempt_at=None)
    log.warning("sent copy message=%s not saved: %s", copy.message_id, exc)
    return Status.FAILED
