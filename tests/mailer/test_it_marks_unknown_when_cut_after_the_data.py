from mailer import delivery, services
from mailer.models import DeliveryAttempt
from tests.mailer.base import send


def test_it_records_unknown_and_does_not_resend_on_its_own(owner, account, server):
    server.script.close_after_data = 1
    msg = send(owner, account)

    assert delivery.deliver(msg.pk) == "unknown"

    msg.refresh_from_db()
    assert msg.status == "unknown" and msg.next_attempt_at is None
    attempt = DeliveryAttempt.objects.get(message=msg)
    assert attempt.outcome == "unknown" and attempt.end_of_data_at is not None
    assert attempt.error_class == "SMTPOutcomeUnknown" and attempt.transcript
    assert delivery.sweep(enqueue=lambda pk: None).enqueued == []
    assert delivery.deliver(msg.pk) is None

    services.resend_unknown(owner, msg)
    assert delivery.deliver(msg.pk) == "sent"
    msg.refresh_from_db()
    assert msg.status == "sent" and msg.attempts == 2
    assert [r.message_id for r in server.received] == [msg.message_id]
