from mailer import delivery
from mailer.models import DeliveryAttempt
from tests.mailer.base import send, statuses


def test_it_fails_a_message_refused_after_the_data(owner, account, server):
    server.script.data = ["554 5.6.0 Message content rejected by policy"]
    msg = send(owner, account, to="alice@example.org, bob@example.org")

    assert delivery.deliver(msg.pk) == "failed"

    msg.refresh_from_db()
    assert msg.status == "failed" and msg.next_attempt_at is None
    assert "Message content rejected by policy" in msg.last_error
    assert statuses(msg) == {"alice@example.org": "failed", "bob@example.org": "failed"}
    attempt = DeliveryAttempt.objects.get(message=msg)
    assert (attempt.reply_code, attempt.reply_enhanced) == (554, "5.6.0")
    assert attempt.reply_text == "Message content rejected by policy"
    # Final: the sweeper never picks it up again.
    assert delivery.sweep(enqueue=lambda pk: None).enqueued == []


def test_it_fails_when_every_recipient_is_refused(owner, account, server):
    server.script.rcpt["a@example.org"] = ["550 5.1.1 Unknown user a"]
    server.script.rcpt["b@example.org"] = ["553 5.1.3 Bad address b"]
    msg = send(owner, account, to="a@example.org, b@example.org")

    assert delivery.deliver(msg.pk) == "failed"

    msg.refresh_from_db()
    assert msg.status == "failed"
    refused = {r.address: r for r in msg.recipients.all()}
    assert (refused["a@example.org"].text, refused["b@example.org"].text) == (
        "Unknown user a",
        "Bad address b",
    )
    assert "mailbox does not exist" in refused["a@example.org"].reason
    assert "“550 5.1.1 Unknown user a”" in msg.last_error
    assert server.received == []
