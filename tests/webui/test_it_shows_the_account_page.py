"""The account page: capability snapshot, quota use, a paused account's reason and resume."""

from django.utils import timezone

from mailer.models import OutboxMessage, SmtpAccount
from tests.webui.conftest import make_message


def test_it_shows_capabilities_and_quota_use(owner_client, account):
    SmtpAccount.objects.filter(pk=account.pk).update(
        capabilities={"esmtp": True, "extensions": {"PIPELINING": "", "SIZE": "10240000"},
                      "auth": ["PLAIN", "LOGIN"], "size": 10240000},
        capabilities_seen_at=timezone.now(), quota_per_hour=100,
    )
    body = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "PIPELINING" in body and "PLAIN, LOGIN" in body and "9.8 MB" in body
    assert "Seen " in body
    assert '<meter min="0" max="100" value="0"' in body


def test_it_says_why_an_account_is_paused_and_resumes_it(owner, owner_client, account):
    SmtpAccount.objects.filter(pk=account.pk).update(
        paused_at=timezone.now(), paused_reason="The server refused the username or password.")
    message = make_message(owner, account, status="deferred")
    body = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "Paused</strong> (since" in body and "refused the username or password" in body
    assert "Resume sending" in body

    response = owner_client.post(f"/accounts/{account.pk}/resume/")
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.paused_at is None
    message.refresh_from_db()
    assert message.next_attempt_at <= timezone.now()


def test_it_sends_a_test_message_through_the_outbox(owner_client, account):
    response = owner_client.post(f"/accounts/{account.pk}/test-message/")
    message = OutboxMessage.objects.get(account=account)
    assert response["Location"] == f"/messages/{message.pk}/"
    assert message.to_display == account.from_address
