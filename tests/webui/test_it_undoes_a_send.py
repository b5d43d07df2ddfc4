"""Send lands on the message page with Undo for the user's hold; Undo brings the draft back
untouched (attachments too); after the hold it is too late, said plainly."""

from datetime import timedelta

from django.utils import timezone

from mailer.models import Draft, OutboxMessage, UserPreferences
from tests.webui.conftest import make_draft


def test_it_offers_undo_within_the_hold_and_brings_the_draft_back(owner, owner_client, account):
    UserPreferences.objects.create(user=owner, hold_seconds=30)
    draft = make_draft(owner, account, subject="Oops", cc="carl@example.org",
                       files=[("plan.txt", b"the plan")])
    response = owner_client.post(f"/drafts/{draft.pk}/", {
        "account": account.pk, "to": draft.to, "cc": draft.cc, "subject": "Oops",
        "body_text": "Hello.", "action": "send"})
    message = OutboxMessage.objects.get()
    assert response["Location"] == f"/messages/{message.pk}/"
    page = owner_client.get(response["Location"]).content.decode()
    assert (
        "Undo" in page
        and "data-undo-until" in page
        and "Sending in <strong data-undo-seconds>30<" in page
    )

    response = owner_client.post(f"/messages/{message.pk}/undo/")
    back = Draft.objects.get(owner=owner)
    assert response["Location"] == f"/drafts/{back.pk}/"
    assert (back.subject, back.to, back.cc, back.body_text) == (
        "Oops",
        draft.to,
        draft.cc,
        "Hello.",
    )
    assert list(back.attachments.values_list("filename", flat=True)) == ["plan.txt"]
    assert not OutboxMessage.objects.exists()


def test_it_says_when_it_is_too_late_to_undo(owner, owner_client, account):
    UserPreferences.objects.create(user=owner, hold_seconds=10)
    draft = make_draft(owner, account)
    owner_client.post(f"/drafts/{draft.pk}/", {"account": account.pk, "to": draft.to,
                                                "subject": "x", "action": "send"})
    message = OutboxMessage.objects.get()
    OutboxMessage.objects.filter(pk=message.pk).update(
        status="queued", next_attempt_at=timezone.now() - timedelta(seconds=1),
        hold_until=timezone.now() - timedelta(seconds=1))
    page = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert "data-undo-until" not in page
    response = owner_client.post(f"/messages/{message.pk}/undo/", follow=True)
    assert "It is too late to undo" in response.content.decode()
    assert OutboxMessage.objects.filter(pk=message.pk).exists()


def test_it_schedules_for_later(owner, owner_client, account):
    draft = make_draft(owner, account)
    when = (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = owner_client.post(f"/drafts/{draft.pk}/", {
        "account": account.pk, "to": draft.to, "subject": "Later", "send_at": when,
        "action": "schedule"}, follow=True)
    message = OutboxMessage.objects.get()
    assert message.status == "scheduled" and message.scheduled_at > timezone.now()
    page = response.content.decode()
    assert f"It goes out at {when.replace('T', ' ')}." in page  # what will happen, no stale notice


def test_it_refuses_to_schedule_in_the_past(owner, owner_client, account):
    draft = make_draft(owner, account)
    response = owner_client.post(f"/drafts/{draft.pk}/", {
        "account": account.pk, "to": draft.to, "subject": "Later",
        "send_at": "2001-01-01T10:00", "action": "schedule"})
    assert response.status_code == 400
    assert "in the future" in response.content.decode()
    assert not OutboxMessage.objects.exists()
