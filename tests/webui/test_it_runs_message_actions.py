"""Retry now, cancel, send again (unknown) and edit as new draft, through mailer.services;
a state that forbids the action says why."""

from mailer.models import Draft, Recipient
from tests.webui.conftest import make_message


def test_it_cancels_a_waiting_message(owner, owner_client, account):
    message = make_message(owner, account, status="deferred")
    response = owner_client.post(f"/messages/{message.pk}/cancel/", follow=True)
    message.refresh_from_db()
    assert message.status == "cancelled"
    assert "will not be sent" in response.content.decode()


def test_it_says_why_a_sent_message_cannot_be_cancelled(owner, owner_client, account):
    message = make_message(owner, account, status="sent")
    response = owner_client.post(f"/messages/{message.pk}/cancel/", follow=True)
    message.refresh_from_db()
    assert message.status == "sent"
    assert "cannot be cancelled" in response.content.decode()


def test_it_retries_a_failed_message_now(owner, owner_client, account):
    message = make_message(owner, account, status="failed")
    Recipient.objects.filter(message=message).update(status="failed", code=451)
    owner_client.post(f"/messages/{message.pk}/retry/")
    message.refresh_from_db()
    assert message.status == "queued"
    assert set(message.recipients.values_list("status", flat=True)) == {"pending"}


def test_it_sends_an_unknown_message_again(owner, owner_client, account):
    message = make_message(owner, account, status="unknown")
    owner_client.post(f"/messages/{message.pk}/resend/")
    message.refresh_from_db()
    assert message.status == "queued"


def test_it_edits_a_message_as_a_new_draft(owner, owner_client, message):
    response = owner_client.post(f"/messages/{message.pk}/edit/")
    draft = Draft.objects.get(owner=owner)
    assert response["Location"] == f"/drafts/{draft.pk}/"
    assert draft.subject == "Quarterly report"
    assert list(draft.attachments.values_list("filename", flat=True)) == ["notes.txt"]
