"""Compose: saving, validation errors next to the fields with the draft kept (attachments
included), removing attachments, autosave and uploads for the JS, drafts list and delete."""

from django.core.files.uploadedfile import SimpleUploadedFile

from mailer.models import Attachment, Draft, OutboxMessage


def _form(chosen, **fields):
    values = {"account": chosen.pk, "to": "alice@example.org", "subject": "Hi",
              "body_text": "Hello", "action": "save"}
    values.update(fields)
    return values


def test_it_saves_a_draft_with_its_attachments(owner, owner_client, account):
    files = [SimpleUploadedFile("a.txt", b"first"), SimpleUploadedFile("b.txt", b"second")]
    response = owner_client.post("/compose/", {**_form(account), "attachments": files})
    draft = Draft.objects.get(owner=owner)
    assert response["Location"] == f"/drafts/{draft.pk}/"
    assert sorted(draft.attachments.values_list("filename", "size")) == [("a.txt", 5), ("b.txt", 6)]
    page = owner_client.get(f"/drafts/{draft.pk}/").content.decode()
    assert "a.txt" in page and "b.txt" in page and 'value="Hi"' in page


def test_it_keeps_everything_typed_when_sending_fails_validation(owner, owner_client, account):
    files = [SimpleUploadedFile("report.pdf", b"%PDF-1.4 data")]
    response = owner_client.post("/compose/", {
        **_form(account, to="alice@example.org, not an address", cc="bob@@example.org",
                subject="Numbers", body_text="See the numbers.", action="send"),
        "attachments": files,
    })
    assert response.status_code == 400
    body = response.content.decode()
    assert "not an address" in body and "is not a valid address" in body
    assert body.count('class="errorlist') >= 2  # To and Cc each carry their own errors
    draft = Draft.objects.get(owner=owner)
    assert draft.to == "alice@example.org, not an address" and draft.cc == "bob@@example.org"
    assert draft.body_text == "See the numbers."
    assert list(draft.attachments.values_list("filename", flat=True)) == ["report.pdf"]
    assert f'name="draft" value="{draft.pk}"' in body and "report.pdf" in body
    assert not OutboxMessage.objects.exists()


def test_it_asks_for_an_account_before_sending(owner, owner_client, account):
    response = owner_client.post("/compose/", _form(account, account="", action="send"))
    assert response.status_code == 400
    assert "Choose the account to send this message from" in response.content.decode()
    assert Draft.objects.filter(owner=owner).count() == 1


def test_it_removes_an_attachment_and_keeps_the_text(owner, owner_client, draft):
    attachment = draft.attachments.get()
    response = owner_client.post(f"/drafts/{draft.pk}/", {
        **_form(draft.account, subject="Changed"), "remove_attachment": attachment.pk})
    assert response["Location"] == f"/drafts/{draft.pk}/"
    assert not Attachment.objects.filter(pk=attachment.pk).exists()
    draft.refresh_from_db()
    assert draft.subject == "Changed"


def test_it_autosaves_and_returns_the_draft_address(owner, owner_client, account):
    response = owner_client.post("/compose/autosave/", _form(account, subject="Typing…"))
    draft = Draft.objects.get(owner=owner)
    assert response.json()["draft"] == draft.pk
    assert response.json()["url"] == f"/drafts/{draft.pk}/"
    assert response.json()["saved_at"]
    owner_client.post("/compose/autosave/", _form(account, subject="Typing more", draft=draft.pk))
    draft.refresh_from_db()
    assert draft.subject == "Typing more"
    assert Draft.objects.filter(owner=owner).count() == 1


def test_it_uploads_an_attachment_for_the_script(owner_client, draft):
    response = owner_client.post(
        f"/drafts/{draft.pk}/attachments/",
        {"file": SimpleUploadedFile("<img src=x onerror=alert(1)>.png", b"\x89PNG")},
    )
    assert response.status_code == 200
    html = response.json()["html"]
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html and "<img" not in html
    assert "notes.txt" in html
    assert draft.attachments.count() == 2


def test_it_refuses_an_attachment_over_the_limit(owner_client, draft, settings):
    settings.MAILROOM_MAX_ATTACHMENT_BYTES = 10
    response = owner_client.post(f"/drafts/{draft.pk}/attachments/",
                                 {"file": SimpleUploadedFile("big.bin", b"x" * 11)})
    assert response.status_code == 400
    assert "the limit for one attachment" in response.json()["error"]
    assert draft.attachments.count() == 1


def test_it_lists_and_deletes_drafts(owner_client, draft):
    assert "Quarterly report" in owner_client.get("/drafts/").content.decode()
    response = owner_client.post(f"/drafts/{draft.pk}/delete/")
    assert response["Location"] == "/drafts/"
    assert not Draft.objects.filter(pk=draft.pk).exists()


def test_ask_for_a_delivery_report_goes_from_the_form_to_the_message_and_back(
    owner, owner_client, account
):
    page = owner_client.get("/compose/").content.decode()
    assert 'name="delivery_report"' in page and "Ask for a delivery report" in page
    assert "delivery reports (DSN)" in page  # says when it can work
    owner_client.post("/compose/", _form(account, delivery_report="on"))
    draft = Draft.objects.get(owner=owner)
    assert draft.delivery_report
    box = owner_client.get(f"/drafts/{draft.pk}/").content.decode().split(
        'name="delivery_report"')[1].split(">")[0]
    assert " checked" in box
    # Kept when sending fails validation too.
    owner_client.post(f"/drafts/{draft.pk}/", _form(account, to="not an address",
                                                    delivery_report="on", action="send",
                                                    draft=draft.pk))
    assert Draft.objects.get(pk=draft.pk).delivery_report
    owner_client.post(f"/drafts/{draft.pk}/", _form(account, delivery_report="on",
                                                    action="send", draft=draft.pk))
    message = OutboxMessage.objects.get(owner=owner)
    assert message.delivery_report
    owner_client.post(f"/messages/{message.pk}/undo/")
    assert Draft.objects.get(owner=owner).delivery_report  # undo brings it back
