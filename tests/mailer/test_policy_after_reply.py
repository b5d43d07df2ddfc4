"""``policy.after_reply``: what one attempt makes of a message, its recipients and its
account — read like a table, as the rules are. Pure: no database, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailer import policy
from mailer.models import DeliveryAttempt, OutboxMessage, Recipient
from mailer.policy import Action, RecipientStatus
from mailer.smtp import errors
from mailer.smtp.replies import Reply

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def reply(line: str) -> Reply:
    code, _, rest = line.partition(" ")
    return Reply.from_lines(int(code), [rest])


OK = policy.accepted(reply("250 2.0.0 Ok: queued as 4F2A1"))
BUSY = policy.refused(reply("451 4.3.0 Mailbox busy"))  # rcpt-transient
NO_USER = policy.refused(reply("550 5.1.1 No such user"))
TOO_MANY = policy.refused(reply("452 4.5.3 Too many recipients"))
SLOW_DOWN = policy.refused(reply("451 4.7.1 Too many messages, slow down"))
PENDING = RecipientStatus.PENDING


def after(replies, *, before=None, decision=None, age=timedelta(0), recent_throttles=0):
    before = before or {a: PENDING for a in replies}
    return policy.after_reply(decision=decision, replies=replies, before=before,
                              first_attempt_at=T0, now=T0 + age,
                              recent_throttles=recent_throttles)


@pytest.fixture(autouse=True)
def _timing(settings):
    settings.MAILROOM_MIN_BACKOFF_SECONDS = 300
    settings.MAILROOM_MAX_BACKOFF_SECONDS = 4000
    settings.MAILROOM_MAX_MESSAGE_AGE_SECONDS = 5 * 86400
    settings.MAILROOM_THROTTLE_SECONDS = 60
    settings.MAILROOM_RETRY_UNKNOWN = False


@pytest.mark.parametrize(
    ("replies", "status", "outcome", "recipients"),
    [
        # every recipient took it
        ({"a": OK, "b": OK, "c": OK}, "sent", "sent", ["accepted"] * 3),
        # a 451 to one of three: that one waits, the message waits for it
        ({"a": OK, "b": OK, "c": BUSY}, "deferred", "partial",
         ["accepted", "accepted", "deferred"]),
        # a 550 to one of three: that one failed for good, the message is sent
        ({"a": OK, "b": OK, "c": NO_USER}, "sent", "partial",
         ["accepted", "accepted", "failed"]),
        # every recipient refused for good
        ({"a": NO_USER, "b": NO_USER}, "failed", "failed", ["failed", "failed"]),
        # every recipient waits
        ({"a": BUSY, "b": BUSY}, "deferred", "deferred", ["deferred", "deferred"]),
    ],
)
def test_each_result_decides_the_message(replies, status, outcome, recipients):
    decided = after(replies)
    assert (decided.status, decided.outcome) == (status, outcome)
    assert [r.status for r in decided.recipients.values()] == recipients


def test_a_451_to_one_of_three_waits_for_that_one_alone():
    decided = after({"a": OK, "b": OK, "c": BUSY}, age=timedelta(minutes=20))
    assert decided.next_attempt_at == T0 + timedelta(minutes=40)  # about the age (Postfix)
    assert decided.wait_reason.startswith("Waiting to retry: c: The server could not take")
    assert "451 4.3.0 Mailbox busy" in decided.last_error
    assert not decided.sent and not decided.pause_account and decided.throttle_until is None


def test_past_the_maximum_age_the_waiting_recipients_fail():
    decided = after({"a": OK, "c": BUSY}, age=timedelta(days=5))
    assert (decided.status, decided.outcome) == ("sent", "partial")
    assert decided.recipients["c"].status == "failed"
    assert decided.recipients["c"].reason.startswith("Gave up after 5 day(s): ")
    assert decided.last_error.startswith("Gave up after 5 day(s): ")
    assert decided.sent and decided.next_attempt_at is None


def test_only_the_recipients_of_this_attempt_change():
    # a accepted earlier; this attempt tried b only
    decided = after({"b": OK}, before={"a": "accepted", "b": "deferred"})
    assert list(decided.recipients) == ["b"]
    assert (decided.status, decided.outcome) == ("sent", "sent")


def test_too_many_recipients_sends_the_rest_right_away():
    decided = after({"a": OK, "b": TOO_MANY})
    assert decided.recipients["b"].status == "pending"
    assert decided.send_rest_now and decided.next_attempt_at == T0
    assert (decided.status, decided.outcome) == ("deferred", "partial")


def test_a_provider_that_says_slow_down_spaces_the_account():
    decided = after({"a": SLOW_DOWN}, recent_throttles=3)
    assert decided.outcome == "throttled"
    assert decided.throttle_until == T0 + timedelta(seconds=480)  # 60 s doubled three times
    assert decided.next_attempt_at == decided.throttle_until  # later than the 300 s backoff
    first = after({"a": SLOW_DOWN})
    assert first.throttle_until == T0 + timedelta(seconds=60)
    assert first.next_attempt_at == T0 + timedelta(seconds=300)  # the backoff is later
    assert not decided.send_rest_now


def test_bad_credentials_pause_the_account_and_the_mail_waits():
    decision = policy.classify("auth", 535, "5.7.8", "Username and Password not accepted")
    decided = after(policy.after_error(decision, ["a", "b"], {}), decision=decision)
    assert (decided.status, decided.outcome) == ("deferred", "paused")
    assert decided.pause_account and decided.next_attempt_at == T0
    assert decided.wait_reason.startswith("The account is paused. ")
    assert {r.status for r in decided.recipients.values()} == {"deferred"}


def test_a_connection_lost_after_the_data_is_unknown():
    decision = policy.classify_attempt_error(errors.SMTPOutcomeUnknown("lost after the dot"))
    decided = after(policy.after_error(decision, ["a"], {}), decision=decision)
    assert (decided.status, decided.outcome) == ("unknown", "unknown")
    assert decided.next_attempt_at is None
    assert decided.recipients["a"].status == "pending"


def test_unknown_is_retried_only_when_the_setting_says_so(settings):
    settings.MAILROOM_RETRY_UNKNOWN = True
    decision = policy.classify_attempt_error(errors.SMTPOutcomeUnknown("lost after the dot"))
    assert decision.action is Action.DEFER
    decided = after(policy.after_error(decision, ["a"], {}), decision=decision)
    assert decided.status == "deferred" and decided.next_attempt_at is not None


def test_an_error_keeps_the_recipients_refused_with_their_own_reply():
    decision = policy.classify("data", 554, "5.6.0", "Message content rejected")
    replies = policy.after_error(decision, ["a", "b"], {"b": reply("550 5.1.1 No such user")})
    assert replies["b"].code == 550 and replies["b"].reason.startswith("The recipient's mailbox")
    assert replies["a"].code == 554
    assert after(replies, decision=decision).status == "failed"


def test_an_accepted_message_lifts_a_throttle():
    assert after({"a": OK}).lift_throttle
    assert not after({"a": BUSY}).lift_throttle


def test_the_states_are_the_models_states():
    assert {s.value for s in RecipientStatus} == set(Recipient.Status.values)
    assert {s.value for s in policy.MessageStatus} <= set(OutboxMessage.Status.values)
    assert {s.value for s in policy.AttemptOutcome} <= set(DeliveryAttempt.Outcome.values)
