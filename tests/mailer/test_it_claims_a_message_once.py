from mailer import delivery
from mailer.models import DeliveryAttempt
from tests.mailer.base import send


def test_it_lets_only_one_claim_win(owner, account):
    msg = send(owner, account)
    first = delivery.claim(msg.pk, worker="w1")
    second = delivery.claim(msg.pk, worker="w2")

    assert first is not None and second is None
    claimed, attempt, _ = first
    assert claimed.status == "sending" and claimed.claimed_by == "w1"
    assert (
        claimed.attempt_id == attempt.attempt_id and claimed.lease_until > claimed.last_attempt_at
    )
    # The attempt row exists before any network traffic (evidence if the worker dies).
    assert DeliveryAttempt.objects.get(message=msg).outcome == "in_progress"


def test_it_does_not_claim_mail_of_a_paused_account(owner, account):
    msg = send(owner, account)
    account.paused_at = msg.created_at
    account.save()
    assert delivery.claim(msg.pk) is None
    assert delivery.sweep(enqueue=lambda pk: None).enqueued == []


def test_it_fails_a_message_whose_account_was_deleted(owner, account, server):
    msg = send(owner, account)
    account.delete()
    assert delivery.deliver(msg.pk) == "failed"
    msg.refresh_from_db()
    assert msg.status == "failed" and "account" in msg.last_error
    assert server.received == []
