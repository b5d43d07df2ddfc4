"""The common result (every recipient accepted, nothing else to decide) is recorded by
``delivery._record_sent`` in three plain statements instead of the general ``_record``.
It must write exactly what the general path writes, fall back to it whenever the case does
not apply, and, like it, write nothing once the message is no longer ours.

Runs on SQLite and again on PostgreSQL (pass 2), whose SQL differs."""

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer import delivery
from mailer.models import DeliveryAttempt, OutboxMessage, Recipient
from tests.mailer.base import send, statuses

pytestmark = pytest.mark.pipeline

MESSAGE_FIELDS = ("status", "attempts", "attempt_id", "lease_until", "claimed_by", "last_error",
                  "next_attempt_at", "wait_reason")
RECIPIENT_FIELDS = ("kind", "status", "code", "enhanced", "text", "reason")
ATTEMPT_FIELDS = ("outcome", "reply_code", "reply_enhanced", "reply_text", "error_class",
                  "connection_reused", "recipients")


def _same_server_words(text):
    return re.sub(r"queued as \S+", "queued as ID", text) if isinstance(text, str) else text


def _state(message: OutboxMessage) -> dict:
    message.refresh_from_db()
    attempt = DeliveryAttempt.objects.get(message=message)
    return {
        "message": {f: getattr(message, f) for f in MESSAGE_FIELDS} | {
            "sent": message.sent_at is not None},
        "recipients": sorted(
            tuple(_same_server_words(getattr(r, f)) for f in ("address", *RECIPIENT_FIELDS))
            for r in message.recipients.all()
        ),
        "attempt": {f: _same_server_words(getattr(attempt, f)) for f in ATTEMPT_FIELDS} | {
            "recipients": [{k: _same_server_words(v) for k, v in r.items()}
                           for r in attempt.recipients],
            "finished": attempt.finished_at is not None,
            "transcript": [line.split(" ", 1)[0] for line in attempt.transcript.splitlines()],
        },
    }


def test_it_writes_what_the_general_path_writes(owner, account, server, monkeypatch):
    fast = send(owner, account, to="alice@example.org", cc="carol@example.org", subject="Same")
    assert delivery.deliver(fast.pk) == "sent"
    delivery.connections.close_all()  # both attempts open their own connection

    slow = send(owner, account, to="alice@example.org", cc="carol@example.org", subject="Same")
    # The only way to make the general path record a plain success: switch the fast one off.
    monkeypatch.setattr(delivery, "_record_sent", lambda *args: False)
    assert delivery.deliver(slow.pk) == "sent"

    assert _state(fast) == _state(slow)
    assert _state(fast)["message"]["status"] == "sent"
    assert statuses(fast) == {"alice@example.org": "accepted", "carol@example.org": "accepted"}
    assert len(server.received) == 2


def test_it_takes_fewer_statements_than_the_general_path(owner, account, server, monkeypatch):
    counts = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(delivery, "_record_sent", lambda *args: False)
        message = send(owner, account, subject=f"fast={fast}")
        delivery.connections.close_all()  # both open a connection (and record its capabilities)
        with CaptureQueriesContext(connection) as queries:
            assert delivery.deliver(message.pk) == "sent"
        counts.append(len(queries))
    assert counts[0] <= counts[1] - 2  # no SELECT of the message, none of its recipients


def test_a_refused_recipient_goes_the_general_way(owner, account, server):
    server.script.rcpt = {"nobody@example.org": ["550 5.1.1 No such user"]}
    message = send(owner, account, to="alice@example.org, nobody@example.org")

    assert delivery.deliver(message.pk) == "partial"
    assert statuses(message) == {"alice@example.org": "accepted", "nobody@example.org": "failed"}
    message.refresh_from_db()
    assert message.status == "sent" and "No such user" in message.last_error


def test_it_writes_nothing_once_the_message_is_no_longer_ours(owner, account, server):
    message = send(owner, account)
    claimed, attempt = delivery.claim(message.pk)
    claimed.recipient_rows = list(claimed.recipients.all())
    result = delivery._Result()
    result.recipients = {"alice@example.org": (Recipient.Status.ACCEPTED, 250, "2.0.0", "OK", "")}
    # The lease ran out and another worker took the message over meanwhile.
    other = DeliveryAttempt.objects.create(message=message, attempt_id=uuid.uuid4(),
                                           worker="other", started_at=timezone.now())
    OutboxMessage.objects.filter(pk=message.pk).update(attempt_id=other.attempt_id)

    assert delivery._record_sent(claimed, attempt, claimed.account, result) is False
    assert delivery._record(claimed, attempt, claimed.account, result) == "lease_lost"
    message.refresh_from_db()
    assert message.status == "sending" and message.attempt_id == other.attempt_id
    assert statuses(message) == {"alice@example.org": "pending"}
    assert DeliveryAttempt.objects.get(pk=attempt.pk).outcome == "lease_expired"
