""""Sign in with …" through the web, step by step, against the real test provider
(django-oauth-toolkit in its own process, PKCE required, see ``tests/oauth.py``): the
clicks only record the sign-in and hand it to a worker (``signins.run``, called here as
the worker calls it: a request never talks to the provider); the user signs in at the
provider's own pages; the provider sends the browser back; a worker completes it. Then the
attacks on the way back: a wrong or replayed state, another user's code, a foreign host,
the provider's refusal, a token endpoint answering HTML or garbage, an ID token for
another address than the account's. No token ever appears in a page or a log.
tests/webui/test_it_signs_in_in_a_browser.py walks the same in Chromium with a real worker."""

from __future__ import annotations

import urllib.parse
from datetime import timedelta

import pytest
from django.utils import timezone

from mailer import crypto, services
from mailer.models import OAuthSignIn, OAuthToken, SmtpAccount
from mailer.oauth import signins
from tests.webui.conftest import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.pipeline]  # on both databases


def _start(client, **data) -> OAuthSignIn:
    """Click "Sign in with Test provider" and let a worker prepare the provider's page."""
    response = client.post("/accounts/oauth/testidp/start/", data)
    assert response.status_code == 302
    row = OAuthSignIn.objects.latest("pk")
    assert response["Location"] == f"/accounts/oauth/{row.pk}/"
    assert row.status == "preparing" and row.authorize_url == ""  # nothing outbound yet
    page = client.get(response["Location"]).content.decode()
    assert "Preparing the sign-in with Test provider" in page
    assert signins.run(row.pk) == "at_provider"
    return row


def _to_provider(client, row) -> str:
    """The page's live poll sends the browser to the provider's authorization page."""
    response = client.get(f"/accounts/oauth/{row.pk}/", HTTP_HX_REQUEST="true")
    return response["HX-Redirect"]


def _back(oauth_server, url: str, username: str, **kw) -> str:
    """The user at the provider; the path + query the provider sends the browser back to."""
    back = urllib.parse.urlsplit(oauth_server.consent(url, username, **kw))
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://testserver/accounts/oauth/callback/"
    return f"{back.path}?{back.query}"


def _complete(client, back: str) -> OAuthSignIn:
    response = client.get(back)
    assert response.status_code == 302, response.content.decode()[:500]
    row = OAuthSignIn.objects.latest("pk")
    assert row.status == "exchanging" and row.code_encrypted
    signins.run(row.pk)
    row.refresh_from_db()
    assert row.code_encrypted == "" and row.verifier_encrypted == ""  # wiped either way
    return row


def test_it_adds_an_account_by_signing_in(owner_client, owner, oauth_server, provider, sink,
                                          caplog):
    form = owner_client.get("/accounts/new/").content.decode()
    assert "Sign in with Test provider" in form
    row = _start(owner_client)
    url = _to_provider(owner_client, row)
    assert url.startswith(f"{oauth_server.issuer}/authorize/")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["redirect_uri"] == ["http://testserver/accounts/oauth/callback/"]
    assert query["state"] == [row.state] and query["code_challenge_method"] == ["S256"]
    row = _complete(owner_client, _back(oauth_server, url, "alice"))
    assert row.status == "done", row.message
    account = SmtpAccount.objects.get(owner=owner, from_address="alice@example.test")
    assert (account.host, account.port, account.auth_mechanism) == ("127.0.0.1", sink.port,
                                                                   "XOAUTH2")
    page = owner_client.get(f"/accounts/oauth/{row.pk}/", follow=True)
    assert page.redirect_chain[-1][0] == f"/accounts/{account.pk}/"
    body = page.content.decode()
    assert "Signed in to Test provider as alice@example.test" in body
    assert "signed in with Test provider as alice@example.test" in body

    # "Test connection" logs in with the token (the worker's step).
    owner_client.post(f"/accounts/{account.pk}/check/")
    services.run_check(account.checks.get().pk)
    body = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "It works." in body and "AUTH XOAUTH2" in body
    token = OAuthToken.objects.get(account=account)
    secrets = [crypto.decrypt(token.access_encrypted), crypto.decrypt(token.refresh_encrypted)]
    assert not [s for s in secrets if s in body or s in caplog.text]

    # Signing in again as the same address renews that account, it adds no second one.
    row = _start(owner_client)
    row = _complete(owner_client, _back(oauth_server, _to_provider(owner_client, row), "alice"))
    assert row.status == "done" and row.result_id == account.pk
    assert SmtpAccount.objects.filter(owner=owner).count() == 1


def test_a_replayed_or_made_up_state_is_refused(owner_client, oauth_server, provider):
    row = _start(owner_client)
    back = _back(oauth_server, _to_provider(owner_client, row), "alice")
    assert _complete(owner_client, back).status == "done"
    again = owner_client.get(back)
    assert again.status_code == 400
    assert "not started in this browser by you, or it was already completed" in (
        again.content.decode())
    made_up = owner_client.get("/accounts/oauth/callback/?code=abc&state=made-up")
    assert made_up.status_code == 400
    assert OAuthSignIn.objects.filter(status="exchanging").count() == 0


def test_another_users_code_is_refused(owner_client, stranger_client, owner, oauth_server,
                                       provider):
    row = _start(owner_client)
    back = _back(oauth_server, _to_provider(owner_client, row), "alice")
    # The stranger gets the owner's way back (a link sent to them, a shared screen).
    refused = stranger_client.get(back)
    assert refused.status_code == 400
    row.refresh_from_db()
    assert row.status == "at_provider" and row.code_encrypted == ""
    # Even with the state planted in the stranger's session, the row is not theirs.
    session = stranger_client.session
    session[signins.SESSION_KEY] = [row.state]
    session.save()
    assert stranger_client.get(back).status_code == 400
    # The owner's own sign-in is unharmed.
    assert _complete(owner_client, back).status == "done"
    assert not SmtpAccount.objects.exclude(owner=owner).filter(from_address__contains="alice")


def test_it_never_sends_the_browser_to_a_foreign_host(owner_client, oauth_server, provider):
    # A forged Host header cannot make the callback address point elsewhere.
    forged = owner_client.post("/accounts/oauth/testidp/start/", HTTP_HOST="evil.example")
    assert forged.status_code == 400
    assert not OAuthSignIn.objects.exists()
    # A "next" address is no part of the flow: every redirect is Mailroom's own or the
    # provider's authorization page.
    row = _start(owner_client, next="https://evil.example/")
    url = _to_provider(owner_client, row)
    assert url.startswith(f"{oauth_server.issuer}/authorize/")
    assert "evil" not in url
    response = owner_client.get(_back(oauth_server, url, "alice"))
    assert response["Location"] == f"/accounts/oauth/{row.pk}/"


def test_the_users_refusal_at_the_provider_is_said_plainly(owner_client, oauth_server,
                                                            provider):
    row = _start(owner_client)
    back = _back(oauth_server, _to_provider(owner_client, row), "alice", allow=False)
    response = owner_client.get(back, follow=True)
    body = response.content.decode()
    assert "You did not allow Mailroom at Test provider, so nothing was saved." in body
    assert "access_denied" in body and "Start again" in body
    assert not SmtpAccount.objects.exists()


@pytest.mark.parametrize("mode", ["html", "garbage", "down"])
def test_a_token_endpoint_that_misbehaves_fails_the_sign_in_clearly(
    owner_client, oauth_server, provider, mode
):
    row = _start(owner_client)
    back = _back(oauth_server, _to_provider(owner_client, row), "alice")
    oauth_server.token_mode(mode)
    try:
        row = _complete(owner_client, back)
    finally:
        oauth_server.token_mode("ok")
    assert row.status == "failed"
    assert "Test provider's sign-in service did not answer properly" in row.message
    body = owner_client.get(f"/accounts/oauth/{row.pk}/").content.decode()
    assert "It did not work." in body and "Start again" in body
    assert not SmtpAccount.objects.exists()


def test_a_provider_answering_an_error_page_fails_the_sign_in_clearly(
    owner_client, oauth_server, provider
):
    from mailer.oauth import tokens

    tokens._DISCOVERED.clear()  # the endpoints are read afresh (once per process otherwise)
    oauth_server.discovery_mode("html")
    try:
        owner_client.post("/accounts/oauth/testidp/start/")
        row = OAuthSignIn.objects.get()
        assert signins.run(row.pk) == "failed"
    finally:
        oauth_server.discovery_mode("ok")
    body = owner_client.get(f"/accounts/oauth/{row.pk}/").content.decode()
    assert "It did not work." in body
    assert "Test provider&#x27;s sign-in service did not answer properly (HTTP 502)" in body
    assert "Start again" in body


def test_reconnecting_as_another_address_is_refused(owner_client, owner, oauth_server,
                                                    provider):
    row = _start(owner_client)
    _complete(owner_client, _back(oauth_server, _to_provider(owner_client, row), "bob"))
    account = SmtpAccount.objects.get(owner=owner)
    OAuthToken.objects.filter(account=account).update(revoked_at=timezone.now())
    SmtpAccount.objects.filter(pk=account.pk).update(paused_at=timezone.now(),
                                                      paused_reason="Revoked.")
    page = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "Reconnect" in page and "Resume sending" not in page  # only a sign-in helps

    row = _start(owner_client, account=account.pk)
    url = _to_provider(owner_client, row)
    assert "login_hint=bob%40example.test" in url
    row = _complete(owner_client, _back(oauth_server, url, "alice"))
    assert row.status == "failed"
    assert "You signed in to Test provider as alice@example.test, but this account sends as" \
        " bob@example.test" in row.message
    account.refresh_from_db()
    assert account.paused_at is not None  # nothing changed

    row = _start(owner_client, account=account.pk)
    row = _complete(owner_client, _back(oauth_server, _to_provider(owner_client, row), "bob"))
    assert row.status == "done" and "reconnected" in row.message
    account.refresh_from_db()
    assert account.paused_at is None


def test_a_sign_in_left_too_long_or_without_a_worker_ends_in_plain_words(
    owner_client, oauth_server, provider
):
    row = _start(owner_client)
    back = _back(oauth_server, _to_provider(owner_client, row), "alice")
    OAuthSignIn.objects.filter(pk=row.pk).update(step_at=timezone.now() - timedelta(minutes=11))
    response = owner_client.get(back)
    assert response.status_code == 400
    assert "took longer than 10 minutes" in response.content.decode()

    owner_client.post("/accounts/oauth/testidp/start/")
    row = OAuthSignIn.objects.latest("pk")
    OAuthSignIn.objects.filter(pk=row.pk).update(step_at=timezone.now() - timedelta(minutes=2))
    body = owner_client.get(f"/accounts/oauth/{row.pk}/").content.decode()
    assert "No worker started the sign-in within" in body
    assert signins.run(row.pk) is None  # a worker arriving late does nothing


def test_without_providers_there_is_no_sign_in_button(owner_client, settings):
    settings.MAILROOM_OAUTH_PROVIDERS = []
    settings.MAILROOM_OAUTH_GOOGLE_CLIENT_ID = settings.MAILROOM_OAUTH_MICROSOFT_CLIENT_ID = ""
    assert "Sign in with" not in owner_client.get("/accounts/new/").content.decode()
    response = owner_client.post("/accounts/oauth/google/start/", follow=True)
    assert "Sign-in with “google” is not set up on this Mailroom" in response.content.decode()
    assert not OAuthSignIn.objects.exists()


def test_another_users_sign_in_page_is_not_found(owner_client, oauth_server, provider):
    other = make_user("mallory")
    row = OAuthSignIn.objects.create(owner=other, provider="testidp", state="s" * 32,
                                     nonce="n", redirect_uri="x", step_at=timezone.now())
    assert owner_client.get(f"/accounts/oauth/{row.pk}/").status_code == 404


def test_a_provider_set_up_in_the_admin_works_like_one_in_settings(
    client, owner, oauth_server, sink, settings
):
    from django.contrib.auth import get_user_model

    settings.MAILROOM_OAUTH_PROVIDERS = []
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1")
    client.force_login(admin)
    response = client.post("/admin/mailer/oauthclient/add/", {
        "key": "corp", "kind": "oidc", "enabled": "on", "label": "Corp sign-in",
        "client_id": oauth_server.client_id, "client_secret": oauth_server.client_secret,
        "issuer": oauth_server.issuer, "scopes": "openid email offline_access mail",
        "smtp_host": "127.0.0.1", "smtp_port": str(sink.port), "smtp_security": "none",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    from mailer.models import OAuthClient

    row = OAuthClient.objects.get(key="corp")
    assert row.secret_encrypted and oauth_server.client_secret not in row.secret_encrypted
    page = client.get(f"/admin/mailer/oauthclient/{row.pk}/change/").content.decode()
    assert oauth_server.client_secret not in page and row.secret_encrypted not in page

    client.force_login(owner)
    assert "Sign in with Corp sign-in" in client.get("/accounts/new/").content.decode()
    client.post("/accounts/oauth/corp/start/")
    sign_in = OAuthSignIn.objects.get()
    assert signins.run(sign_in.pk) == "at_provider"
    back = _back(oauth_server, _to_provider(client, sign_in), "alice")
    assert _complete(client, back).status == "done"
    account = SmtpAccount.objects.get(owner=owner)
    assert (account.host, account.port) == ("127.0.0.1", sink.port)

    # The token admin shows who signed in, never a token.
    token = OAuthToken.objects.get(account=account)
    client.force_login(admin)
    page = client.get(f"/admin/mailer/oauthtoken/{token.pk}/change/").content.decode()
    assert "alice@example.test" in page
    assert crypto.decrypt(token.refresh_encrypted) not in page
    assert token.access_encrypted not in page

    # Switched off in the admin, it is gone from the form.
    OAuthClient.objects.filter(pk=row.pk).update(enabled=False)
    client.force_login(owner)
    assert "Sign in with" not in client.get("/accounts/new/").content.decode()
