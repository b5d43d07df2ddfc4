from mailer import delivery
from mailer.models import DeliveryAttempt
from tests.mailer.base import send, statuses


def test_it_sends_to_the_rest_and_fails_the_refused_recipient(owner, account, server):
    server.script.rcpt["nobody@example.org"] = ["550 5.1.1 No such user here"]
    msg = send(owner, account, to="alice@example.org, nobody@example.org")

    assert delivery.deliver(msg.pk) == "partial"

    msg.refresh_from_db()
    assert msg.status == "sent"
    assert statuses(msg) == {"alice@example.org": "accepted", "nobody@example.org": "failed"}
    refused = msg.recipients.get(address="nobody@example.org")
    assert (refused.code, refused.enhanced) == (550, "5.1.1")
    assert "No such user here" in refused.text
    assert [r.rcpt_tos for r in server.received] == [["alice@example.org"]]
    assert DeliveryAttempt.objects.get(message=msg).outcome == "partial"
