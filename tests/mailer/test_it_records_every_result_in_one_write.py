"""Every attempt's result is recorded by one path (``mailer.delivery.recording``): the
message row conditional on our attempt id, then the recipients that changed, the attempt's
row and the account's state — one statement on PostgreSQL, one transaction of plain UPDATEs
and no SELECT elsewhere, whatever the policy decided. Once the message is no longer ours,
nothing is written.

Runs on SQLite and again on PostgreSQL (pass 2), whose SQL differs."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer import delivery, policy
from mailer.delivery.attempt import Result
from mailer.delivery.recording import record
from mailer.models import DeliveryAttempt, OutboxMessage
from tests.mailer.base import send, statuses

pytestmark = pytest.mark.pipeline

OK = policy.RecipientReply(policy.RecipientStatus.ACCEPTED, 250, "2.0.0", "OK: queued as 1")
BUSY = policy.RecipientReply(policy.RecipientStatus.DEFERRED, 451, "4.2.1", "Mailbox busy",
                             "The server could not take this recipient for now.",
                             policy.Action.DEFER)


def _record(claimed, replies):
    message, attempt, _ = claimed
    with CaptureQueriesContext(connection) as queries:
        outcome = record(message, attempt, message.account, Result(recipients=replies),
                         claimed.recipients)
    sql = [q["sql"].lstrip().split(None, 1)[0].upper() for q in queries]
    return outcome, [s for s in sql if s not in ("SAVEPOINT", "RELEASE")]


@pytest.mark.parametrize(
    ("replies", "outcome", "status", "after"),
    [
        ({"alice@example.org": OK, "bob@example.org": OK}, "sent", "sent",
         {"alice@example.org": "accepted", "bob@example.org": "accepted"}),
        # A 451 to one of the recipients: the same single write decides "partial, deferred".
        ({"alice@example.org": OK, "bob@example.org": BUSY}, "partial", "deferred",
         {"alice@example.org": "accepted", "bob@example.org": "deferred"}),
    ],
)
def test_a_result_is_one_write(owner, account, replies, outcome, status, after):
    message = send(owner, account, to="alice@example.org, bob@example.org")
    claimed = delivery.claim(message.pk)

    got, sql = _record(claimed, replies)

    assert got == outcome
    if connection.vendor == "postgresql":
        assert sql == ["WITH"]
    else:
        assert set(sql) == {"UPDATE"}  # the message, two recipients, the attempt
        assert len(sql) == 4
    message.refresh_from_db()
    assert message.status == status and message.attempt_id is None
    assert statuses(message) == after
    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.outcome == outcome and attempt.finished_at is not None
    assert [r["status"] for r in attempt.recipients] == list(after.values())


def test_a_pause_is_written_with_the_message(owner, account):
    message = send(owner, account)
    claimed = delivery.claim(message.pk)
    decision = policy.classify("auth", 535, "5.7.8", "Bad credentials")
    replies = policy.after_error(decision, ["alice@example.org"], {})
    with CaptureQueriesContext(connection) as queries:
        got = record(claimed.message, claimed.attempt, account,
                     Result(decision, recipients=replies), claimed.recipients)
    assert got == "paused"
    if connection.vendor == "postgresql":
        assert [q["sql"].split(None, 1)[0] for q in queries] == ["WITH"]
    account.refresh_from_db()
    assert account.paused_at is not None and "5.7.8" in account.paused_reason
    message.refresh_from_db()
    assert message.status == "deferred" and message.wait_reason.startswith("The account is paused")


def test_it_writes_nothing_once_the_message_is_no_longer_ours(owner, account):
    message = send(owner, account)
    claimed = delivery.claim(message.pk)
    # The lease ran out and another worker took the message over meanwhile.
    other = DeliveryAttempt.objects.create(message=message, attempt_id=uuid.uuid4(),
                                           worker="other", started_at=timezone.now())
    OutboxMessage.objects.filter(pk=message.pk).update(attempt_id=other.attempt_id)

    got, _ = _record(claimed, {"alice@example.org": OK})

    assert got == "lease_lost"
    message.refresh_from_db()
    assert message.status == "sending" and message.attempt_id == other.attempt_id
    assert statuses(message) == {"alice@example.org": "pending"}
    assert DeliveryAttempt.objects.get(pk=claimed[1].pk).outcome == "lease_expired"
