"""The account's password is write-only: it is never rendered into any page (not even the
edit form), and leaving it blank on edit keeps the stored one."""

from mailer.models import SmtpAccount
from tests.webui.conftest import SECRET, make_message


def test_it_never_renders_the_secret(owner, owner_client, account, draft):
    message = make_message(owner, account)
    urls = ["/", "/accounts/", f"/accounts/{account.pk}/", f"/accounts/{account.pk}/edit/",
            "/compose/", f"/drafts/{draft.pk}/", "/outbox/", f"/messages/{message.pk}/",
            f"/messages/{message.pk}/download.eml"]
    for url in urls:
        response = owner_client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert SECRET.encode() not in body, url
        assert account.secret_encrypted.encode() not in body, url


def test_it_keeps_the_secret_when_left_blank_and_replaces_it_when_given(owner_client, account):
    form = {
        "label": "Work", "from_name": "Owen", "from_address": "owen@example.com",
        "host": "127.0.0.1", "port": 2525, "security": "starttls", "auth_mechanism": "auto",
        "username": "owen", "verify_tls": "on", "secret": "",
    }
    response = owner_client.post(f"/accounts/{account.pk}/edit/", form)
    assert response.status_code == 302
    assert SECRET.encode() not in response.content
    account.refresh_from_db()
    assert account.get_secret() == SECRET

    owner_client.post(f"/accounts/{account.pk}/edit/", {**form, "secret": "new-one"})
    account.refresh_from_db()
    assert account.get_secret() == "new-one"
    assert SECRET not in account.secret_encrypted


def test_it_does_not_echo_a_secret_typed_into_an_invalid_form(owner_client):
    response = owner_client.post("/accounts/new/", {"label": "", "secret": SECRET})
    assert response.status_code == 400
    assert SECRET.encode() not in response.content
    assert not SmtpAccount.objects.filter(label="").exists()
