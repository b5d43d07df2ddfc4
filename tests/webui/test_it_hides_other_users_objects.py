"""Someone else's account, draft or message is a 404 on every URL — never a 403 that
would confirm it exists — and nothing about it changes."""

from mailer.models import Draft, OutboxMessage, SmtpAccount
from tests.webui.urls import object_get_urls, object_post_urls


def test_it_answers_404_to_a_stranger_on_every_object_page(
    stranger_client, account, draft, message
):
    for url in object_get_urls(account, draft, message):
        assert stranger_client.get(url).status_code == 404, url


def test_it_answers_404_to_a_stranger_on_every_action(stranger_client, account, draft, message):
    for url in object_post_urls(account, draft, message):
        assert (
            stranger_client.post(url, {"subject": "hijacked", "label": "x"}).status_code == 404
        ), url
    assert SmtpAccount.objects.filter(pk=account.pk, label="Work").exists()
    assert Draft.objects.filter(pk=draft.pk, subject="Quarterly report").exists()
    assert OutboxMessage.objects.filter(pk=message.pk, status=message.status).exists()


def test_it_does_not_let_a_stranger_autosave_into_a_draft(stranger_client, draft):
    response = stranger_client.post("/compose/autosave/", {"draft": draft.pk, "subject": "mine"})
    assert response.status_code == 404
    draft.refresh_from_db()
    assert draft.subject == "Quarterly report"


def test_it_does_not_offer_a_strangers_account_in_compose(stranger_client, stranger, account):
    response = stranger_client.post("/compose/", {"account": account.pk, "to": "a@example.org",
                                                  "action": "save"})
    assert response.status_code == 400
    assert Draft.objects.filter(owner=stranger, account=account).count() == 0
