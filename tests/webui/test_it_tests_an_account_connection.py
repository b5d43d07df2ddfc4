"""Test connection runs mailer.services.check_account against a real loopback server and
shows the verdict in plain words, the capabilities and the transcript — never the secret."""

from mailer.models import SmtpAccount
from tests.webui.conftest import SECRET


def _point_at(account, server, **fields):
    SmtpAccount.objects.filter(pk=account.pk).update(
        host=server.host, port=server.port, security="starttls", username="owen",
        ca_certificate=server.ca_pem, **fields)


def test_it_shows_the_verdict_capabilities_and_transcript(owner_client, account, smtp_server_factory):
    server = smtp_server_factory(security="starttls", accounts={"owen": SECRET})
    _point_at(account, server)
    response = owner_client.post(f"/accounts/{account.pk}/check/", follow=True)
    body = response.content.decode()
    assert "It works." in body
    assert "PIPELINING" in body and "32.0 MB" in body  # capabilities
    assert "C: STARTTLS" in body and "C: AUTH" in body  # the redacted transcript
    assert SECRET not in body
    account.refresh_from_db()
    assert account.capabilities and account.capabilities_seen_at


def test_it_says_in_plain_words_why_the_login_failed(owner_client, account, smtp_server_factory):
    server = smtp_server_factory(security="starttls", accounts={"owen": "another-password"})
    _point_at(account, server)
    response = owner_client.post(f"/accounts/{account.pk}/check/", follow=True)
    body = response.content.decode()
    assert "It did not work." in body
    assert "The server refused the username or password." in body
    assert "535 5.7.8" in body
    assert SECRET not in body


def test_it_signs_out(owner_client):
    response = owner_client.post("/logout/")
    assert response.status_code == 302
    assert owner_client.get("/").status_code == 302
