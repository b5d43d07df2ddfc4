from mailer import delivery, services
from tests.mailer.base import make_account, send
from tests.mailer.servers import ScriptedSink
from tests.ports import free_port


def test_it_reports_a_working_account_with_its_capabilities(owner, account, server):
    result = services.check_account(owner, account)
    assert result.ok and "ready to send" in result.verdict
    assert result.capabilities["esmtp"] is True
    assert any(line.startswith("C: EHLO") for line in result.transcript)
    account.refresh_from_db()
    assert account.capabilities == result.capabilities and account.capabilities_seen_at


def test_it_says_in_plain_words_what_failed(owner):
    account = make_account(owner, port=free_port())
    result = services.check_account(owner, account)
    assert not result.ok and result.error
    assert "connection failed" in result.verdict.lower()


def test_a_successful_check_resumes_a_paused_account_and_its_mail(owner):
    with ScriptedSink(accounts={"owner": "good"}) as server:
        account = make_account(owner, server, username="owner", secret="bad", auth_mechanism="auto",
                               allow_plaintext_auth=True)
        msg = send(owner, account)
        assert delivery.deliver(msg.pk) == "paused"
        account.refresh_from_db()
        result = services.check_account(owner, account)
        assert (
            not result.ok
            and "password" in result.verdict
            and "AUTH" in "\n".join(result.transcript)
        )
        assert "good" not in "\n".join(result.transcript) and "bad" not in "\n".join(
            result.transcript
        )
        account.set_secret("good")
        account.save()
        assert services.check_account(owner, account).ok
        account.refresh_from_db()
        assert account.paused_at is None
        assert delivery.deliver(msg.pk) == "sent"


def test_it_sends_a_test_message_through_the_outbox(owner, account, server):
    msg = services.send_test_message(owner, account)
    assert msg.status == "queued" and msg.subject == "Mailroom test message"
    assert delivery.deliver(msg.pk) == "sent"
    assert server.received[0].rcpt_tos == [account.from_address]
