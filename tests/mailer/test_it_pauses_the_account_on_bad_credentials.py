from mailer import delivery, services
from tests.mailer.base import make_account, send
from tests.mailer.servers import ScriptedSink


def test_it_pauses_the_account_keeps_the_mail_and_resumes_when_fixed(owner):
    with ScriptedSink(accounts={"owner": "right-password"}) as server:
        account = make_account(owner, server, username="owner", secret="wrong-password",
                               auth_mechanism="auto", allow_plaintext_auth=True)
        msg = send(owner, account)

        assert delivery.deliver(msg.pk) == "paused"

        msg.refresh_from_db()
        account.refresh_from_db()
        assert msg.status == "deferred" and msg.recipients.get().status == "deferred"
        assert account.paused_at is not None and "password" in account.paused_reason
        assert "paused" in msg.wait_reason
        # Nothing more is attempted while paused: no wake-up, no claim.
        assert delivery.sweep(enqueue=lambda pk: None).enqueued == []
        assert delivery.deliver(msg.pk) is None
        connections_before = server.connections

        account.set_secret("right-password")
        account.save()
        services.resume_account(owner, account)
        assert delivery.deliver(msg.pk) == "sent"
        assert server.connections == connections_before + 1
        assert [r.message_id for r in server.received] == [msg.message_id]


def test_mail_sent_while_the_account_is_paused_says_why_it_waits(owner, account, server):
    from django.utils import timezone

    account.paused_at, account.paused_reason = timezone.now(), "The server refused the password."
    account.save()
    msg = send(owner, account)
    assert msg.wait_reason == "The account is paused. The server refused the password."
    assert delivery.deliver(msg.pk) is None
    services.resume_account(owner, account)
    assert delivery.deliver(msg.pk) == "sent"
