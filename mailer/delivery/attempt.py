"""One delivery attempt over SMTP: connect (or reuse), send, mark, read the reply.

No transaction is open while the client talks. Right before the final chunk of the data
goes out, the client calls :func:`mark_end_of_data`, which stamps ``end_of_data_at`` on the
attempt in a durable commit and renews the lease. From then on a lost worker, a lost
connection or a crashed database means "outcome unknown", never a blind resend; a worker
that has lost its lease stops there, so the message is not sent twice.

In a batch, the previous message's record is written in the same durable commit as this
message's mark (:func:`_exchange`): one WAL flush per message, not two. A message larger
than ``_GROUP_MAX_BYTES`` has the previous record written before its exchange instead, so
that a long upload never keeps an accepted message unrecorded. The next message's envelope
goes out right behind this one's end of data (``Upcoming``, ``SMTPClient.next_envelope_hook``):
the next attempt, reusing the connection, finds its replies there. All of it runs on the
worker's thread, in the order written here.

What the attempt learned comes back as a :class:`Result` — each recipient's
``policy.RecipientReply``, or the error and the message-level decision — for
``recording`` to write. The meaning of every reply is ``mailer.policy``'s.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, TypeVar

from django.conf import settings
from django.utils import timezone

from mailer import policy
from mailer.delivery import rows
from mailer.delivery.cache import connections
from mailer.models import DeliveryAttempt, OutboxMessage, Recipient, SmtpAccount

log = logging.getLogger("mailer.delivery")

Status = OutboxMessage.Status
T = TypeVar("T")


class LeaseLost(Exception):
    """Our claim on the message was taken over (lease expired and reclaimed)."""


@dataclass
class Result:
    """What one attempt learned, before it is written."""

    decision: policy.Decision | None = None  # the message-level decision, after an error
    error: BaseException | None = None
    recipients: dict[str, policy.RecipientReply] = field(default_factory=dict)
    reply: object | None = None  # the server's final reply (or the error's)
    transcript: list[str] = field(default_factory=list)
    lease_lost: bool = False
    reused: bool = False  # sent over a cached connection


def mark_end_of_data(message_id: int, attempt_id: uuid.UUID) -> None:
    """Called by the SMTP client right before the final chunk: from here on a lost worker
    (or a crashed database) means "outcome unknown". The commit is durable and returns
    before the final chunk is written, so the mark is on disk whenever the server may have
    the message. Also renews the lease, and stops if we no longer hold it."""
    if not rows.write(*_mark(message_id, attempt_id), durable=True):
        raise LeaseLost(f"message {message_id}: lease lost before the end of data")


def _mark(message_id: int, attempt_id: uuid.UUID) -> list[rows.Update]:
    """The mark's rows: the lease renewed if we hold it, then ``end_of_data_at``."""
    now = timezone.now()
    return [
        rows.Update(
            OutboxMessage, {"pk": message_id, "attempt_id": attempt_id, "status": Status.SENDING},
            {"lease_until": now + timedelta(seconds=settings.MAILROOM_LEASE_SECONDS)},
        ),
        rows.Update(DeliveryAttempt, {"attempt_id": attempt_id}, {"end_of_data_at": now}),
    ]


class Previous(Protocol):
    """The batch's record before this message (``recording.Recording``), not yet written."""

    def write(self) -> object: ...

    def write_with(self, other: list[rows.Update]) -> bool | None: ...


def deleted_account(pending: list[Recipient]) -> Result:
    """The account was deleted while the message waited: it fails, saying what to do."""
    text = ("The account this message was to be sent from has been deleted. Edit the "
            "message as a new draft and choose another account.")
    decision = policy.Decision(policy.Action.FAIL_MESSAGE, text, "account-deleted", plain=text)
    replies = policy.after_error(decision, [r.address for r in pending], {})
    return Result(decision, recipients=replies)


def send(message: OutboxMessage, attempt: DeliveryAttempt, account: SmtpAccount,
         pending: list[Recipient], *, previous: Previous | None = None,
         then: Upcoming | None = None) -> Result:
    """Send the frozen message to the pending recipients over a cached or new connection.
    In a batch: ``previous`` (the record of the message before) is written with this one's
    end-of-data mark, in one commit (:func:`_exchange`), or first if this message is large;
    ``then`` (the batch's next message) has its envelope go out right behind this one's end
    of data, where the server pipelines (``SMTPClient.next_envelope_hook``): its attempt
    then finds the replies waiting on the connection it reuses."""
    from mailer.smtp import errors as smtp_errors

    if previous is not None and message.size > _GROUP_MAX_BYTES:
        previous.write()  # nothing of this message has left yet: a failure sends nothing
        previous = None
    marker = _Marker(message.pk, attempt.attempt_id)
    args, kwargs = _envelope_of(message, pending)
    client = None
    try:
        for fresh in (False, True):
            client, reused = connections.acquire(account)
            _clear_transcript(client)
            try:
                with message.eml.open("rb") as fh:
                    client.next_envelope_hook = _next_envelope(client, then)
                    sent = _exchange(client, marker, previous,
                                     functools.partial(client.send, *args, fh, **kwargs))
                break
            except (smtp_errors.SMTPServerDisconnected, ConnectionError) as exc:
                # A cached connection the server had closed (it was not checked with NOOP):
                # nothing of the data left (no end-of-data mark), so try once more on a new one.
                if fresh or not reused or marker.marked or marker.lease_lost:
                    raise
                log.info("delivery entry=%s cached connection was dead (%s); reconnecting",
                         message.pk, exc)
                client.close()
                client = None
            finally:
                previous = None  # written with the mark, or by the caller (``_attempt``)
                if client is not None:
                    client.next_envelope_hook = None
    except _Abandoned as exc:
        # ``previous`` failed (the database is out of reach): the exchange stopped before
        # the end of the data, so nothing was sent; the error is the caller's.
        if client is not None:
            client.close()
        raise exc.error from None
    except Exception as exc:
        return _failed(exc, client, marker, message, account, pending)
    assert client is not None  # the loop either sent (break) or raised
    result = Result(reply=sent.data_reply, transcript=list(client.transcript or []), reused=reused)
    connections.release(account, client)
    for r in sent.recipients:
        result.recipients[r.address] = (
            policy.accepted(sent.data_reply or r.reply) if r.accepted else policy.refused(r.reply)
        )
    return result


class _Abandoned(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


# Above this size (bytes) a message's upload could take a while, and the previous message of
# the batch, already accepted, is recorded before it starts rather than with its mark.
_GROUP_MAX_BYTES = 64 * 1024


def _exchange(client, marker: _Marker, previous: Previous | None, send: Callable[[], T]) -> T:
    """Run ``send`` (the SMTP exchange) with the end-of-data mark as the client's hook, made
    right before the final chunk, with ``previous`` in the same commit. Should ``previous``
    fail to be written, the hook raises ``_Abandoned``: the exchange stops before the end of
    the data, so nothing is sent. An exchange that never reaches its end of data (refused,
    disconnected) leaves ``previous`` to its caller, who writes it before deciding anything
    else."""
    client.end_of_data_hook = functools.partial(marker, previous)
    try:
        return send()
    finally:
        client.end_of_data_hook = None


@dataclass
class Upcoming:
    """The batch's next message and the recipients it is to go to."""

    message: OutboxMessage
    pending: list[Recipient]


def _envelope_of(message: OutboxMessage, pending: list[Recipient]) -> tuple[tuple, dict]:
    """The arguments of ``SMTPClient.send`` (and ``.envelope``) for this message, but the
    message's data: one place, so an envelope made ahead is the one its send would make."""
    return ((message.envelope_from, [r.address for r in pending]),
            {"size_hint": message.size, **_dsn(message)})


def _next_envelope(client, then: Upcoming | None) -> Callable[[], object] | None:
    """The client's ``next_envelope_hook`` for the batch's next message: its envelope, made
    on this connection (the message file is scanned, on the exchange's thread: no database);
    None where it cannot be made now (its own send then says why)."""
    if then is None or not then.pending:
        return None
    args, kwargs = _envelope_of(then.message, then.pending)

    def envelope():
        try:
            with then.message.eml.open("rb") as fh:
                return client.envelope(*args, fh, **kwargs)
        except Exception as exc:
            log.info("delivery entry=%s envelope not sent ahead (%s)", then.message.pk, exc)
            return None

    return envelope


def _dsn(message: OutboxMessage) -> dict:
    """Delivery reports asked for (sent only where the server offers DSN): on failure and
    delay always, on success when the user asked; the headers only (RET=HDRS: enough to
    match the report by Message-ID, not the whole message back); the envelope id that
    ``mailer.imap.bounces`` matches the report by, and each recipient as given (ORCPT)."""
    notify = ["SUCCESS", "FAILURE", "DELAY"] if message.delivery_report else ["FAILURE", "DELAY"]
    return {"dsn_notify": notify, "dsn_ret": "HDRS", "envid": message.envid or None,
            "dsn_orcpt": True}


class _Marker:
    """The client's end-of-data hook: the mark, and whether it was made or refused."""

    def __init__(self, message_id: int, attempt_id: uuid.UUID) -> None:
        self.message_id, self.attempt_id = message_id, attempt_id
        self.marked = self.lease_lost = False

    def __call__(self, previous: Previous | None = None) -> None:
        """The mark; with ``previous``, the batch's record before, in the same commit where
        it can be (else that record first, then the mark, as two commits)."""
        try:
            held = self._with(previous) if previous is not None else None
            if held is None:
                mark_end_of_data(self.message_id, self.attempt_id)
            elif not held:
                raise LeaseLost(f"message {self.message_id}: lease lost before the end of data")
            self.marked = True
        except LeaseLost:
            self.lease_lost = True
            raise

    def _with(self, previous: Previous) -> bool | None:
        """The mark written with ``previous`` in one commit: whether we held the lease. None
        where they could not go together: ``previous`` is then written alone (its failure
        abandons the exchange), and the mark is still to be made."""
        try:
            held = previous.write_with(_mark(self.message_id, self.attempt_id))
        except Exception as exc:  # nothing written: one after the other
            log.warning("delivery entry=%s record and mark not written together (%s)",
                        self.message_id, exc)
            held = None
        if held is None:
            try:
                previous.write()
            except Exception as exc:
                raise _Abandoned(exc) from exc
        return held


def _failed(exc: BaseException, client, marker: _Marker, message, account, pending) -> Result:
    from mailer.smtp import errors as smtp_errors

    transcript = list(getattr(client, "transcript", None) or []) if client else []
    if client is not None:
        client.close()
    if marker.lease_lost or isinstance(exc, LeaseLost):
        return Result(error=exc, transcript=transcript, lease_lost=True)
    if not isinstance(exc, smtp_errors.SMTPError | OSError):
        log.exception("delivery entry=%s unexpected error", message.pk)
    caps = account.capabilities if isinstance(account.capabilities, dict) else {}
    decision = policy.classify_attempt_error(exc, limit=caps.get("size"))
    # Per-recipient replies, when the server refused some at RCPT (all refused, or the
    # data refused after some were taken).
    sent = getattr(exc, "result", None)
    refused = {r.address: r.reply for r in sent.recipients if not r.accepted} if sent else {}
    replies = policy.after_error(decision, [r.address for r in pending], refused)
    return Result(decision, exc, replies, getattr(exc, "reply", None), transcript)


def _clear_transcript(client) -> None:
    # A reused connection's transcript holds earlier messages; each attempt keeps its own
    # (and its own size budget).
    client.transcript = []
    if hasattr(client, "_transcript_size"):
        client._transcript_size = 0
        client._transcript_full = False
