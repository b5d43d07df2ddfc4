import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from mailer import crypto
from mailer.models import OAuthToken, SmtpAccount
from tests.mailer.base import make_account


def _stored(account) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT secret_encrypted FROM mailer_smtpaccount WHERE id = %s", [account.pk])
        return cur.fetchone()[0]


def test_it_stores_only_ciphertext(owner):
    account = make_account(owner, username="me", secret="hunter2-correct-horse")
    raw = _stored(account)
    assert "hunter2" not in raw and raw.startswith("gAAAA")
    assert SmtpAccount.objects.get(pk=account.pk).get_secret() == "hunter2-correct-horse"
    assert account.has_secret


def test_it_rotates_to_the_newest_key(owner, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MAILROOM_CREDENTIALS_KEYS = [old]
    account = make_account(owner, username="me", secret="s3cret")
    before = _stored(account)

    settings.MAILROOM_CREDENTIALS_KEYS = [new, old]
    assert account.get_secret() == "s3cret"  # old ciphertext still readable
    call_command("rotatekeys")
    after = _stored(account)
    assert after != before

    settings.MAILROOM_CREDENTIALS_KEYS = [new]  # the old key can go now
    assert SmtpAccount.objects.get(pk=account.pk).get_secret() == "s3cret"
    assert Fernet(new.encode()).decrypt(after.encode()) == b"s3cret"


def test_it_says_what_to_do_when_no_key_fits(owner, settings):
    account = make_account(owner, username="me", secret="s3cret")
    settings.MAILROOM_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.SecretUnreadable, match="Restore the old key"):
        SmtpAccount.objects.get(pk=account.pk).get_secret()


def test_it_rotates_oauth_tokens_too(owner, settings):
    """rotatekeys covers the refresh and access tokens of an OAuth2 account, so the old key
    can go without signing every such account in again."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MAILROOM_CREDENTIALS_KEYS = [old]
    account = make_account(owner, username="me@example.org", secret="", auth_mechanism="XOAUTH2")
    OAuthToken.objects.create(
        account=account, provider="testidp", subject="1", email="me@example.org",
        refresh_encrypted=crypto.encrypt("refresh-1"), access_encrypted=crypto.encrypt("access-1"),
    )
    settings.MAILROOM_CREDENTIALS_KEYS = [new, old]
    call_command("rotatekeys")

    settings.MAILROOM_CREDENTIALS_KEYS = [new]  # the old key can go now
    row = OAuthToken.objects.get(account=account)
    assert crypto.decrypt(row.refresh_encrypted) == "refresh-1"
    assert crypto.decrypt(row.access_encrypted) == "access-1"
    assert crypto.rotate_all() == (2, 0)  # both readable with the newest key alone
