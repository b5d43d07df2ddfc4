"""The message page past the first hop: a recipient that bounced later (a delivery report)
shows "Bounced" beside the first hop's "Accepted", the plain words and the remote server's
own (HTML in them shown as text), a link to the raw report; the history has a Bounced tab
apart from Failed; the copy in the Sent folder shows its state. Only the owner can
download a report."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.utils import timezone

from mailer.models import DeliveryReport, ImapSettings, OutboxMessage, Recipient, SentCopy
from tests.webui.conftest import make_message

RAW = b"From: MAILER-DAEMON@mta.test\r\nSubject: Undelivered Mail\r\n\r\nreport body\r\n"


def _bounced(owner, account) -> tuple[OutboxMessage, DeliveryReport]:
    message = make_message(owner, account, status="bounced", to="ann@example.org, bob@gone.test")
    report = DeliveryReport(account=account, message=message, kind="standard", folder="INBOX",
                            uidvalidity=7, uid=3, size=len(RAW), reporting_mta="mta.test")
    report.raw.save("r", ContentFile(RAW), save=False)
    report.save()
    message.recipients.update(status="accepted")
    message.recipients.filter(address="bob@gone.test").update(
        remote="bounced", remote_mta="mx.gone.test", remote_status="5.1.1", remote_code=550,
        remote_text="<b>no such user</b> here", remote_at=timezone.now(), report=report,
        remote_reason="The receiving server says this address does not exist.")
    return message, report


def test_the_page_shows_the_bounce_beside_the_first_hop(owner_client, owner, account):
    message, report = _bounced(owner, account)
    page = owner_client.get(f"/messages/{message.pk}/").content.decode()
    row = page.split('data-recipient="bob@gone.test"')[1].split("</tr>")[0]
    assert "badge-accepted" in row and 'class="badge badge-bounced">Bounced' in row
    assert "The receiving server says this address does not exist." in row
    assert "mx.gone.test said: <q>550 5.1.1 &lt;b&gt;no such user&lt;/b&gt; here</q>" in row
    assert f"/messages/{message.pk}/reports/{report.pk}.eml" in row
    other = page.split('data-recipient="ann@example.org"')[1].split("</tr>")[0]
    assert "bounced" not in other.lower()
    assert "a delivery report came back: it could not be delivered to 1 recipient" in page
    assert "Retry now" not in page  # nothing is scheduled, nothing offered
    assert "from mta.test" in page and "download" in page


def test_the_report_downloads_for_its_owner_only(owner_client, stranger_client, owner, account):
    message, report = _bounced(owner, account)
    url = f"/messages/{message.pk}/reports/{report.pk}.eml"
    response = owner_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "message/rfc822"
    assert b"".join(response.streaming_content) == RAW
    assert "attachment" in response["Content-Disposition"]
    assert stranger_client.get(url).status_code == 404
    another = make_message(owner, account, status="sent")
    assert owner_client.get(f"/messages/{another.pk}/reports/{report.pk}.eml").status_code == 404


def test_the_history_counts_bounced_apart_from_failed(owner_client, owner, account):
    _bounced(owner, account)
    make_message(owner, account, status="failed")
    page = owner_client.get("/outbox/").content.decode()
    assert 'class="badge badge-bounced">Bounced</span>' in page
    bounced = owner_client.get("/outbox/?tab=bounced").content.decode()
    assert bounced.count('data-status="bounced"') == 1 and 'data-status="failed"' not in bounced
    failed = owner_client.get("/outbox/?tab=failed").content.decode()
    assert 'data-status="bounced"' not in failed


def test_the_sent_copy_shows_its_state(owner_client, owner, account):
    message = make_message(owner, account, status="sent")
    url = f"/messages/{message.pk}/"
    assert "Copy in Sent" not in owner_client.get(url).content.decode()  # no IMAP: nothing
    imap = ImapSettings.objects.create(account=account, host="imap.example.net",
                                       save_to_sent=False)
    assert 'data-sent-copy="off"' in owner_client.get(url).content.decode()
    ImapSettings.objects.filter(pk=imap.pk).update(save_to_sent=True)
    OutboxMessage.objects.filter(pk=message.pk).update(last_attempt_at=timezone.now())
    page = owner_client.get(url).content.decode()
    assert 'data-sent-copy="pending"' in page and "saves it in the Sent folder" in page
    SentCopy.objects.create(message=message, status="failed",
                            detail="The mailbox is full (over its quota).")
    page = owner_client.get(url).content.decode()
    assert 'data-sent-copy="failed"' in page and "The mailbox is full" in page
    SentCopy.objects.filter(message=message).update(status="saved", detail="Saved in “Sent”.")
    page = owner_client.get(url).content.decode()
    assert 'data-sent-copy="saved"' in page and "Saved in “Sent”." in page
    assert Recipient.objects.filter(message=message, remote="").count() == 1
