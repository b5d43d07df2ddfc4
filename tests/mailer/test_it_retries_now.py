import pytest

from mailer import delivery, services
from tests.mailer.base import send, statuses


def test_it_retries_only_the_failed_recipients_at_once(owner, account, server):
    server.script.rcpt["x@example.org"] = ["550 5.1.1 No such user"]
    msg = send(owner, account, to="a@example.org, x@example.org")
    delivery.deliver(msg.pk)

    msg = services.retry_now(owner, msg, failed_only=True)
    assert msg.status == "queued"
    assert statuses(msg) == {"a@example.org": "accepted", "x@example.org": "pending"}
    assert delivery.deliver(msg.pk) == "sent"
    # The recipient who had it already is not sent it twice; same Message-ID.
    assert [r.rcpt_tos for r in server.received] == [["a@example.org"], ["x@example.org"]]
    assert {r.message_id for r in server.received} == {msg.message_id}


def test_it_retries_a_deferred_message_now(owner, account, server):
    server.script.data = ["451 4.3.0 Later"]
    msg = send(owner, account)
    assert delivery.deliver(msg.pk) == "deferred"
    services.retry_now(owner, msg)
    assert delivery.deliver(msg.pk) == "sent"


def test_it_has_nothing_to_retry_when_everyone_accepted(owner, account, server):
    msg = send(owner, account)
    delivery.deliver(msg.pk)
    with pytest.raises(services.ActionNotAllowed, match="nobody left to retry"):
        services.retry_now(owner, msg)


def test_it_points_to_resend_for_an_unknown_outcome(owner, account, server):
    server.script.close_after_data = 1
    msg = send(owner, account)
    assert delivery.deliver(msg.pk) == "unknown"
    with pytest.raises(services.ActionNotAllowed, match="Resend"):
        services.retry_now(owner, msg)
