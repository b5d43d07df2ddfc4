"""An account signed in with an OAuth2 provider keeps sending as its access tokens expire,
pauses when the grant is revoked and resumes on reconnect, and waits out a provider that
is down. Real parts: the provider is django-oauth-toolkit in its own process
(``tests/oauth_server``: PKCE required, refresh tokens rotated, 2-second access tokens),
and the SMTP server accepts an XOAUTH2 token only if that provider's introspection
endpoint says it is live and issued to the login — a stale token is really refused."""

from __future__ import annotations

import threading
import time
import urllib.parse

import pytest
from django.db import connection

from mailer import crypto, delivery, oauth, services
from mailer.models import DeliveryAttempt, OAuthToken
from mailer.oauth import flow
from tests.mailer.base import send
from tests.workers import wait_until

pytestmark = pytest.mark.pipeline  # on SQLite, and again on PostgreSQL + Redis

REDIRECT = "http://127.0.0.1/oauth/callback/"


def sign_in(oauth_server, provider, username: str):
    """The whole authorization-code flow: Mailroom's URL, the user at the provider, the
    code exchanged and the ID token checked by Mailroom."""
    started = flow.start()
    url = flow.begin(provider, REDIRECT, started)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [started.state]
    back = oauth_server.consent(url, username)
    got = urllib.parse.parse_qs(urllib.parse.urlsplit(back).query)
    assert got["state"] == [started.state]
    return flow.finish(provider, code=got["code"][0], code_verifier=started.code_verifier,
                       redirect_uri=REDIRECT, nonce=started.nonce)


def test_it_keeps_sending_while_access_tokens_expire(
    owner, oauth_server, provider, sink, caplog
):
    identity = sign_in(oauth_server, provider, "alice")
    assert identity.email == "alice@example.test"
    account = services.save_sign_in(owner, provider, identity)
    assert (account.from_address, account.username, account.auth_mechanism) == (
        "alice@example.test", "alice@example.test", "XOAUTH2")
    row = OAuthToken.objects.get(account=account)
    # Stored encrypted: neither token appears in the row as written.
    assert identity.token["refresh_token"] not in row.refresh_encrypted
    assert identity.token["access_token"] not in row.access_encrypted

    before = oauth_server.refreshes()
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 7:  # three and a half token lifetimes
        msg = send(owner, account, to="carol@example.org", subject=f"n{sent}")
        assert delivery.deliver(msg.pk) == "sent"
        delivery.connections.close_all()  # a new login each time: each needs a live token
        sent += 1
        time.sleep(0.4)
    refreshes = oauth_server.refreshes() - before
    # One refresh per lifetime (2 s, renewed 0.5 s early: 7 s hold 4 to 5), never one per
    # message.
    assert 3 <= refreshes <= 6 and refreshes < sent / 2, (refreshes, sent)
    assert len(sink.received) == sent
    assert all(mech == "XOAUTH2" and login == "alice@example.test"
               for mech, login in sink.handler.login_attempts)
    # No token in a transcript (the XOAUTH2 line is redacted) or a log line.
    row.refresh_from_db()
    secrets = [identity.token["access_token"], identity.token["refresh_token"],
               crypto.decrypt(row.access_encrypted), crypto.decrypt(row.refresh_encrypted)]
    check = services.check_account(owner, account)  # what "Test connection" runs
    assert check.ok, check.verdict
    transcripts = "\n".join([*check.transcript, *DeliveryAttempt.objects.filter(
        message__account=account).values_list("transcript", flat=True)])
    assert "AUTH XOAUTH2" in transcripts
    assert not [t for t in secrets if t in transcripts or t in caplog.text]


def test_a_revoked_grant_pauses_the_account_and_reconnect_resumes_it(
    owner, oauth_server, provider, sink
):
    account = services.save_sign_in(owner, provider, sign_in(oauth_server, provider, "bob"))
    OAuthToken.objects.filter(account=account).update(access_expires_at=None)  # renew next
    oauth_server.revoke("bob")
    msg = send(owner, account)

    assert delivery.deliver(msg.pk) == "paused"
    account.refresh_from_db()
    msg.refresh_from_db()
    assert account.paused_at is not None and "Reconnect" in account.paused_reason
    assert msg.status == "deferred" and msg.recipients.get().status == "deferred"
    assert sink.received == []

    # Reconnecting as another address changes nothing.
    with pytest.raises(Exception, match="sends as bob@example.test"):
        services.save_sign_in(owner, provider, sign_in(oauth_server, provider, "alice"),
                              account=account)
    account = services.save_sign_in(owner, provider, sign_in(oauth_server, provider, "bob"),
                                    account=account)
    assert account.paused_at is None
    assert delivery.deliver(msg.pk) == "sent"
    assert [r.message_id for r in sink.received] == [msg.message_id]


@pytest.mark.parametrize("mode", ["down", "html", "garbage"])
def test_a_provider_that_misbehaves_defers_and_never_pauses(
    owner, oauth_server, provider, sink, mode
):
    account = services.save_sign_in(owner, provider, sign_in(oauth_server, provider, "alice"))
    OAuthToken.objects.filter(account=account).update(access_expires_at=None)
    msg = send(owner, account)
    oauth_server.token_mode(mode)
    try:
        assert delivery.deliver(msg.pk) == "deferred"
    finally:
        oauth_server.token_mode("ok")
    account.refresh_from_db()
    msg.refresh_from_db()
    assert account.paused_at is None
    assert msg.delivery_attempts.get().error_class == "ProviderUnavailable"
    assert "sign-in service did not answer properly" in msg.wait_reason
    # The refresh token is untouched: once the provider is back, mail goes out.
    from django.utils import timezone

    msg.__class__.objects.filter(pk=msg.pk).update(next_attempt_at=timezone.now())
    assert delivery.deliver(msg.pk) == "sent"


def test_a_fresh_token_refused_by_the_mail_server_says_what_to_change_at_the_provider(
    owner, oauth_server, provider, sink
):
    account = services.save_sign_in(owner, provider, sign_in(oauth_server, provider, "alice"))
    # The sign-in is good, but the mailbox may not use SMTP (Exchange Online's answer).
    sink.handler._auth.token_check = lambda login, token: False
    msg = send(owner, account)
    assert delivery.deliver(msg.pk) == "paused"
    account.refresh_from_db()
    assert account.paused_reason.startswith(
        "The provider renewed the sign-in, but the mail server refused its token. "
        + provider.smtp_auth_advice)
    check = services.check_account(owner, account)  # "Test connection" says the same
    assert not check.ok and provider.smtp_auth_advice in check.verdict


@pytest.mark.django_db(transaction=True)
def test_a_refresh_racing_the_accounts_deletion_resurrects_nothing(
    owner, oauth_server, provider, sink
):
    account = services.save_sign_in(owner, provider, sign_in(oauth_server, provider, "alice"))
    OAuthToken.objects.filter(account=account).update(access_expires_at=None)
    results: dict[str, object] = {}

    waiting = threading.Event()

    def renew(name):
        def note_the_lease_try(execute, sql, params, many, context):
            done = execute(sql, params, many, context)
            if name == "waiter" and sql.startswith("UPDATE") and "refreshing_until" in sql:
                waiting.set()  # it tried for the lease: it is in its waiting loop
            return done

        try:
            with connection.execute_wrapper(note_the_lease_try):
                results[name] = oauth.access_token(account)
        except Exception as exc:  # noqa: BLE001 - the test reports whatever it was
            results[name] = exc

    oauth_server.token_mode("slow")  # the provider takes 3 s to answer the refresh
    try:
        holder = threading.Thread(target=renew, args=("holder",))
        holder.start()
        wait_until(lambda: OAuthToken.objects.filter(refreshing_until__isnull=False).exists(),
                   what="the refresh lease taken")
        waiter = threading.Thread(target=renew, args=("waiter",))
        waiter.start()
        # Deleted once the waiter waits for the holder (not before it has even looked: it
        # would then find no token at all, a different case).
        assert waiting.wait(10)
        services.delete_account(owner, account)  # the user deletes it meanwhile
        holder.join(15)
        waiter.join(15)
    finally:
        oauth_server.token_mode("ok")
    assert not OAuthToken.objects.exists()  # nothing was written back for the deleted account
    # The one that held the lease got its answer; the one waiting was told plainly.
    assert isinstance(results["holder"], str)
    assert isinstance(results["waiter"], oauth.OAuthError)
    assert "deleted while Mailroom was renewing its sign-in" in str(results["waiter"])
