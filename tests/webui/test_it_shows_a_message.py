"""The message page: headers, recipients with status, code, the server's words and the
plain-words reason; the attempts timeline with transcripts; bodies; the .eml download."""

from email import message_from_bytes

from django.utils.html import escape

from mailer import services
from mailer.models import OutboxMessage, Recipient
from tests.webui.conftest import add_attempt, make_message


def test_it_explains_each_recipient_and_attempt(owner, owner_client, account):
    message = make_message(owner, account, to="ann@example.org, nobody@example.org")
    OutboxMessage.objects.filter(pk=message.pk).update(status="sent")
    Recipient.objects.filter(message=message, address="ann@example.org").update(
        status="accepted", code=250, enhanced="2.1.5", text="Recipient OK")
    # Delivery stores its plain-words reason, ending with the server's words.
    reason = services.explain(550, "5.1.1", "No such user here")
    Recipient.objects.filter(message=message, address="nobody@example.org").update(
        status="failed", code=550, enhanced="5.1.1", text=reason)
    add_attempt(message, outcome="partial", reply_code=250, reply_text="Ok: queued as Q1",
                transcript="S: 220 mx ESMTP\nC: AUTH PLAIN ********\nS: 235 2.7.0 OK")
    body = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert escape(reason) in body and "No such user here" in body
    assert "The server took it for delivery." in body
    assert "AUTH PLAIN ********" in body and "Ok: queued as Q1" in body
    assert "Retry now" in body  # one recipient failed: retry that one
    assert "Quarterly report" in body and "Message-ID" in body and "notes.txt" not in body


def test_it_explains_bad_credentials_and_certificates(owner, owner_client, account):
    message = make_message(owner, account, status="deferred")
    add_attempt(message, outcome="deferred", reply_code=535, reply_enhanced="5.7.8",
                reply_text="Authentication credentials invalid")
    add_attempt(message, outcome="deferred", error_class="SMTPCertificateError")
    body = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert "refused the username or password" in body
    assert "certificate could not be verified" in body
    assert "Next attempt" in body and "Cancel sending" in body


def test_it_explains_an_unknown_outcome_with_send_again(owner, owner_client, account):
    message = make_message(owner, account, status="unknown")
    body = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert "The server may already have this message." in body
    assert "Send again" in body


def test_it_shows_the_text_and_the_sandboxed_html_body(owner, owner_client, account):
    message = make_message(owner, account, body_text="Plain words.", body_html="<p>Rich <b>words</b></p>")
    body = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert "Plain words." in body
    assert f'src="/messages/{message.pk}/body.html"' in body
    assert "<b>words</b>" not in body  # the HTML only ever renders inside the iframe
    assert "<p>Rich <b>words</b></p>" in owner_client.get(f"/messages/{message.pk}/body.html").content.decode()


def test_it_downloads_the_eml_with_its_attachments(owner_client, message):
    response = owner_client.get(f"/messages/{message.pk}/download.eml")
    assert response["Content-Type"] == "message/rfc822"
    assert f'filename="message-{message.pk}.eml"' in response["Content-Disposition"]
    parsed = message_from_bytes(b"".join(response.streaming_content))
    assert parsed["Subject"] == "Quarterly report"
    names = [part.get_filename() for part in parsed.walk() if part.get_filename()]
    assert names == ["notes.txt"]
