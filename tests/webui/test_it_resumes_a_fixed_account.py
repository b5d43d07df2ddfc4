"""Fixing a paused account's settings resumes it and releases its waiting mail (issue 4);
saving without touching the connection settings leaves the pause alone."""

from django.utils import timezone

from mailer.models import OutboxMessage, SmtpAccount
from tests.webui.conftest import make_message

FORM = {
    "label": "Work", "from_name": "Owen Owner", "from_address": "owen@example.com",
    "host": "127.0.0.1", "port": 2525, "security": "starttls", "auth_mechanism": "auto",
    "username": "owen", "verify_tls": "on",
}


def pause(account, message):
    SmtpAccount.objects.filter(pk=account.pk).update(
        paused_at=timezone.now(), paused_reason="The server refused the username or password.")
    OutboxMessage.objects.filter(pk=message.pk).update(
        status="deferred", next_attempt_at=timezone.now(), wait_reason="The account is paused.")


def test_a_new_password_resumes_the_account(owner_client, owner, account):
    message = make_message(owner, account)
    pause(account, message)
    response = owner_client.post(f"/accounts/{account.pk}/edit/", {**FORM, "secret": "new-pw"},
                                 follow=True)
    assert "saved and resumed" in response.content.decode()
    account.refresh_from_db()
    assert account.paused_at is None and account.get_secret() == "new-pw"
    message.refresh_from_db()
    assert message.status == "deferred" and message.wait_reason == ""
    assert message.next_attempt_at <= timezone.now()


def test_renaming_a_paused_account_keeps_the_pause(owner_client, owner, account):
    message = make_message(owner, account)
    pause(account, message)
    response = owner_client.post(f"/accounts/{account.pk}/edit/", {**FORM, "label": "Office"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.label == "Office" and account.paused_at is not None
