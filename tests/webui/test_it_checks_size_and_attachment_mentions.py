"""Before sending: the server's SIZE (after base64, a third more) and the "you mention an
attachment but attached nothing" reminder."""

from mailer.models import OutboxMessage, SmtpAccount
from tests.webui.conftest import make_draft


def _send(client, draft, **extra):
    return client.post(f"/drafts/{draft.pk}/", {
        "account": draft.account.pk, "to": draft.to, "subject": draft.subject,
        "body_text": draft.body_text, "action": "send", **extra})


def test_it_refuses_a_message_bigger_than_the_server_takes_once_encoded(
    owner, owner_client, account
):
    # 30,000 bytes raw is under the limit, but ~40,500 once base64-encoded is over it.
    SmtpAccount.objects.filter(pk=account.pk).update(capabilities={"size": 36000})
    account.refresh_from_db()
    draft = make_draft(owner, account, files=[("scan.pdf", b"x" * 30000)])
    response = _send(owner_client, draft)
    assert response.status_code == 400
    body = response.content.decode()
    assert "accepts at most" in body and "Remove or shrink" in body
    assert not OutboxMessage.objects.exists()
    assert draft.attachments.count() == 1


def test_it_reminds_about_a_missing_attachment_then_sends_when_confirmed(
    owner, owner_client, account
):
    draft = make_draft(owner, account, body_text="Please find the report attached.")
    response = _send(owner_client, draft)
    assert response.status_code == 400
    assert "Did you forget the attachment?" in response.content.decode()
    assert not OutboxMessage.objects.exists()

    response = _send(owner_client, draft, confirm_no_attachment="1")
    message = OutboxMessage.objects.get()
    assert response["Location"] == f"/messages/{message.pk}/"
