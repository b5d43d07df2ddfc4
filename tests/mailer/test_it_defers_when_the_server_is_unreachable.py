from mailer import delivery
from tests.mailer.base import make_account, send
from tests.ports import free_port


def test_it_defers_when_nothing_listens(owner):
    account = make_account(owner, port=free_port())
    msg = send(owner, account)

    assert delivery.deliver(msg.pk) == "deferred"

    msg.refresh_from_db()
    assert msg.status == "deferred" and msg.next_attempt_at > msg.last_attempt_at
    assert msg.recipients.get().status == "deferred"
    assert "try again" in msg.last_error.lower()
