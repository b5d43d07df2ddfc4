"""Home: counts by status, recent failures, paused accounts, quick compose."""

from django.utils import timezone

from mailer.models import OutboxMessage, SmtpAccount
from tests.webui.conftest import make_message


def test_it_shows_counts_failures_and_quick_compose(owner, owner_client, account):
    make_message(owner, account, status="sent")
    make_message(owner, account, status="failed", subject="Bounced")
    SmtpAccount.objects.filter(pk=account.pk).update(paused_at=timezone.now(),
                                                     paused_reason="Password refused.")
    response = owner_client.get("/")
    counts = {key: n for key, _label, n in response.context["counts"]}
    assert counts["all"] == 2 and counts["sent"] == 1 and counts["failed"] == 1
    body = response.content.decode()
    assert "Bounced" in body and "Work is paused" in body and "Password refused." in body
    assert 'action="/compose/"' in body


def test_it_sends_from_quick_compose(owner, owner_client, account):
    response = owner_client.post("/compose/", {"account": account.pk, "to": "amy@example.org",
                                               "subject": "Quick", "body_text": "Hi",
                                               "action": "send"})
    message = OutboxMessage.objects.get(owner=owner)
    assert response["Location"] == f"/messages/{message.pk}/"
    assert message.subject == "Quick"
