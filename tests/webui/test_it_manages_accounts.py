"""Accounts: add (the first becomes the default), edit, set default, delete, presets."""

import json

from mailer.models import SmtpAccount
from tests.webui.conftest import make_account, make_message

FORM = {
    "label": "Home", "from_name": "Owen", "from_address": "owen@home.example",
    "host": "smtp.home.example", "port": 465, "security": "tls", "auth_mechanism": "auto",
    "username": "owen", "secret": "pw-123", "verify_tls": "on",
}


def test_it_adds_the_first_account_as_the_default(owner, owner_client):
    response = owner_client.post("/accounts/new/", FORM)
    account = SmtpAccount.objects.get(owner=owner)
    assert response.status_code == 302 and response["Location"] == f"/accounts/{account.pk}/"
    assert account.is_default and account.get_secret() == "pw-123"
    page = owner_client.get(response["Location"]).content.decode()
    assert "Test the connection" in page


def test_it_shows_errors_next_to_the_fields(owner_client, account):
    response = owner_client.post("/accounts/new/", {**FORM, "label": "Work", "port": "x",
                                                     "security": "none"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "You already have an account with this name" in body
    assert "Enter a whole number" in body
    assert "cross the network in clear" in body


def test_it_edits_an_account(owner_client, account):
    response = owner_client.post(f"/accounts/{account.pk}/edit/", {**FORM, "label": "Renamed"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.label == "Renamed" and account.host == "smtp.home.example"


def test_it_sets_the_default_account(owner, owner_client, account):
    other = make_account(owner, label="Other")
    response = owner_client.post(f"/accounts/{other.pk}/default/", {"next": "list"})
    assert response["Location"] == "/accounts/"
    assert list(SmtpAccount.objects.filter(owner=owner, is_default=True)) == [other]


def test_it_deletes_an_account_and_passes_the_default_on(owner, owner_client, account):
    other = make_account(owner, label="Other")
    response = owner_client.post(f"/accounts/{account.pk}/delete/")
    assert response["Location"] == "/accounts/"
    assert not SmtpAccount.objects.filter(pk=account.pk).exists()
    other.refresh_from_db()
    assert other.is_default


def test_it_refuses_to_delete_an_account_with_waiting_mail(owner, owner_client, account):
    make_message(owner, account)  # queued
    response = owner_client.post(f"/accounts/{account.pk}/delete/", follow=True)
    assert SmtpAccount.objects.filter(pk=account.pk).exists()
    assert "still has 1 message(s) waiting" in response.content.decode()


def test_it_offers_the_provider_presets(owner_client):
    body = owner_client.get("/accounts/new/").content.decode()
    assert "Gmail" in body and "Fastmail" in body and "iCloud" in body
    tag = '<script id="account-presets" type="application/json">'
    start = body.index(tag) + len(tag)
    presets = json.loads(body[start:body.index("</script>", start)])
    assert presets["gmail"]["host"] == "smtp.gmail.com" and presets["gmail"]["port"] == 587
    assert presets["fastmail"]["security"] == "tls"


def test_a_form_with_errors_says_the_password_must_be_typed_again(owner_client, account):
    response = owner_client.post(
        "/accounts/new/", {**FORM, "label": "Work", "secret": "typed-pw-77"}
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "typed-pw-77" not in body  # never rendered back into the page
    assert "Type the password again" in body
    # Nothing typed, nothing to retype: no such line.
    body = owner_client.post(
        "/accounts/new/", {**FORM, "label": "Work", "secret": ""}
    ).content.decode()
    assert "Type the password again" not in body


def test_the_first_real_account_takes_over_from_the_local_sink(owner, owner_client):
    from mailer.management.commands.up import ensure_local_sink_account

    sink, _ = ensure_local_sink_account(owner, "127.0.0.1", 1025)
    response = owner_client.post("/accounts/new/", FORM)
    assert response.status_code == 302
    assert list(SmtpAccount.objects.filter(owner=owner, is_default=True)) == [
        SmtpAccount.objects.get(owner=owner, label="Home")]
    sink.refresh_from_db()
    assert not sink.is_default
    # The compose page picks it first.
    compose = owner_client.get("/compose/").content.decode()
    home = SmtpAccount.objects.get(owner=owner, label="Home")
    assert f'<option value="{home.pk}" selected>' in compose


def test_deleting_the_default_names_the_new_default(owner, owner_client, account):
    SmtpAccount.objects.filter(pk=account.pk).update(is_default=True)
    make_account(owner, label="Other")
    body = owner_client.post(f"/accounts/{account.pk}/delete/", follow=True).content.decode()
    assert "“Other” is now your default account." in body
