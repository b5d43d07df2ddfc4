"""The message page: headers, recipients with status, code, the server's words and the
plain-words reason; the attempts timeline with transcripts; bodies; the .eml download."""

from email import message_from_bytes

from mailer import services
from mailer.models import OutboxMessage, Recipient
from tests.webui.conftest import add_attempt, make_message


def test_it_explains_each_recipient_and_attempt(owner, owner_client, account):
    message = make_message(owner, account, to="ann@example.org, nobody@example.org")
    OutboxMessage.objects.filter(pk=message.pk).update(status="sent")
    Recipient.objects.filter(message=message, address="ann@example.org").update(
        status="accepted", code=250, enhanced="2.1.5", text="Recipient OK")
    # As delivery stores it: the server's own words, and apart from them the plain words.
    Recipient.objects.filter(message=message, address="nobody@example.org").update(
        status="failed",
        code=550,
        enhanced="5.1.1",
        text="No such user here",
        reason=services.explain(
            550, "5.1.1", "No such user here", phase="rcpt", server_words=False
        ),
    )
    add_attempt(message, outcome="partial", reply_code=250, reply_text="Ok: queued as Q1",
                transcript="S: 220 mx ESMTP\nC: AUTH PLAIN ********\nS: 235 2.7.0 OK")
    body = owner_client.get(f"/messages/{message.pk}/").content.decode()
    nobody = _recipient_row(body, "nobody@example.org")
    assert "The recipient&#x27;s mailbox does not exist." in nobody
    assert "The server said: <q>No such user here</q>" in nobody
    assert nobody.count("No such user here") == 1  # not repeated inside the reason
    assert "The server took it for delivery." in body and "<q>Recipient OK</q>" in body
    assert "AUTH PLAIN ********" in body and "<q>250 Ok: queued as Q1</q>" in body
    assert "Retry now" in body  # one recipient failed: retry that one
    assert "Quarterly report" in body and "Message-ID" in body and "notes.txt" not in body


def test_it_explains_a_recipient_stored_without_its_reason(owner, owner_client, account):
    # A row with only the server's reply (no plain words stored): the page explains it.
    message = make_message(owner, account, status="failed", to="nobody@example.org")
    Recipient.objects.filter(message=message).update(
        status="failed", code=550, enhanced="5.1.1", text="User unknown")
    nobody = _recipient_row(owner_client.get(f"/messages/{message.pk}/").content.decode(),
                            "nobody@example.org")
    assert "mailbox does not exist" in nobody and nobody.count("User unknown") == 1


def _recipient_row(body: str, address: str) -> str:
    start = body.index(f'<tr data-recipient="{address}">')
    return body[start:body.index("</tr>", start)]


def test_it_explains_bad_credentials_and_certificates(owner, owner_client, account):
    message = make_message(owner, account, status="deferred")
    add_attempt(
        message,
        outcome="deferred",
        reply_code=535,
        reply_enhanced="5.7.8",
        reply_text="Authentication credentials invalid",
    )
    add_attempt(message, outcome="deferred", error_class="SMTPCertificateError")
    body = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert "refused the username or password" in body
    assert "<q>535 5.7.8 Authentication credentials invalid</q>" in body
    assert body.count("Authentication credentials invalid") == 1
    assert (
        "certificate could not be verified" in body
        and "add the server&#x27;s CA certificate" in body
    )
    assert "Next attempt" in body and "Cancel sending" in body


def test_it_explains_an_unknown_outcome_with_send_again(owner, owner_client, account):
    message = make_message(owner, account, status="unknown")
    body = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert "The server may already have this message." in body
    assert "Send again" in body


def test_it_shows_the_text_and_the_sandboxed_html_body(owner, owner_client, account):
    message = make_message(
        owner, account, body_text="Plain words.", body_html="<p>Rich <b>words</b></p>"
    )
    body = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert "Plain words." in body
    assert f'src="/messages/{message.pk}/body.html"' in body
    assert "<b>words</b>" not in body  # the HTML only ever renders inside the iframe
    assert (
        "<p>Rich <b>words</b></p>"
        in owner_client.get(f"/messages/{message.pk}/body.html").content.decode()
    )


def test_it_downloads_the_eml_with_its_attachments(owner_client, message):
    response = owner_client.get(f"/messages/{message.pk}/download.eml")
    assert response["Content-Type"] == "message/rfc822"
    assert f'filename="message-{message.pk}.eml"' in response["Content-Disposition"]
    parsed = message_from_bytes(b"".join(response.streaming_content))
    assert parsed["Subject"] == "Quarterly report"
    names = [part.get_filename() for part in parsed.walk() if part.get_filename()]
    assert names == ["notes.txt"]
