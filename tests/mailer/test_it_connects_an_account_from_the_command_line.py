"""``manage.py smtpaccount connect``: "Sign in with …" from a shell, against the real test
provider (``tests/oauth.py``). The command prints the provider's address; the user signs
in there in a browser (played here by ``OAuthServer.consent``) and pastes the address the
browser ends on; the account is saved, or reconnected, exactly as the web flow does it."""

from __future__ import annotations

import builtins
import urllib.parse
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from mailer import crypto, delivery
from mailer.models import OAuthSignIn, OAuthToken, SmtpAccount
from tests.mailer.base import send

pytestmark = pytest.mark.pipeline

CALLBACK = "http://127.0.0.1/accounts/oauth/callback/"


def _connect(monkeypatch, oauth_server, username: str, label: str, *, paste=None) -> str:
    def browser(prompt=""):
        url = OAuthSignIn.objects.latest("pk").authorize_url
        back = oauth_server.consent(url, username)
        return paste(back) if paste else back

    monkeypatch.setattr(builtins, "input", browser)
    out = StringIO()
    call_command("smtpaccount", "connect", label, "--user", "owner", "--provider", "testidp",
                 "--redirect-uri", CALLBACK, stdout=out)
    return out.getvalue()


def test_it_connects_and_sends(monkeypatch, owner, oauth_server, provider, sink):
    out = _connect(monkeypatch, oauth_server, "alice", "Alice at the provider")
    assert f"{oauth_server.issuer}/authorize/" in out
    assert "Signed in to Test provider as alice@example.test" in out
    account = SmtpAccount.objects.get(owner=owner, label="Alice at the provider")
    assert account.auth_mechanism == "XOAUTH2"
    assert delivery.deliver(send(owner, account).pk) == "sent"
    # No token, nor its ciphertext, in anything the commands print.
    token = OAuthToken.objects.get(account=account)
    secrets = [token.refresh_encrypted, token.access_encrypted,
               crypto.decrypt(token.refresh_encrypted), crypto.decrypt(token.access_encrypted)]
    printed = out
    for args in (("outbox", "--json"), ("outbox",), ("smtpaccount", "list", "--json")):
        buf = StringIO()
        call_command(*args, stdout=buf)
        printed += buf.getvalue()
    assert "alice@example.test" in printed
    assert not [s for s in secrets if s in printed]


def test_it_takes_a_bare_code_and_reconnects(monkeypatch, owner, oauth_server, provider, sink):
    _connect(monkeypatch, oauth_server, "bob", "Bob")

    def code_only(back):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(back).query)["code"][0]

    out = _connect(monkeypatch, oauth_server, "bob", "Bob", paste=code_only)
    assert "account “Bob” reconnected" in out
    assert SmtpAccount.objects.filter(owner=owner).count() == 1


def test_it_refuses_a_stale_or_foreign_answer(monkeypatch, owner, oauth_server, provider):
    with pytest.raises(CommandError, match="not started in this browser by you"):
        _connect(monkeypatch, oauth_server, "alice", "A",
                 paste=lambda back: back.replace("state=", "state=x"))
    with pytest.raises(CommandError, match="Sign in as bob@example.test"):
        _connect(monkeypatch, oauth_server, "bob", "Bob")
        _connect(monkeypatch, oauth_server, "alice", "Bob")
    assert not SmtpAccount.objects.filter(label="A").exists()
