"""Encryption of account secrets (passwords, OAuth2 tokens) at rest.

``settings.MAILROOM_CREDENTIALS_KEYS`` is a list of Fernet keys, newest first: the first
encrypts, every one decrypts (``MultiFernet``). To rotate, put a new key in front, run
``manage.py rotatekeys`` (re-encrypts every stored secret with the newest key), then drop
the old key.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured(
            "MAILROOM_CREDENTIALS_KEYS is empty: set at least one Fernet key (python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
        )
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "MAILROOM_CREDENTIALS_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes); generate one with Fernet.generate_key()."
        ) from exc


def fernet() -> MultiFernet:
    keys = settings.MAILROOM_CREDENTIALS_KEYS
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    return _fernet_for(tuple(keys))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise SecretUnreadable(
            "The stored secret cannot be decrypted with any key in MAILROOM_CREDENTIALS_KEYS. "
            "Restore the old key (keep it after the new one) or enter the password again."
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the newest key (the first in the list)."""
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with any key in MAILROOM_CREDENTIALS_KEYS."
        ) from exc


def rotate_all() -> tuple[int, int]:
    """Re-encrypt every stored secret with the newest key: account passwords, OAuth2
    tokens (refresh and access), the PKCE verifier and code of a sign-in under way and the
    client secrets of providers set up in the admin. Returns (rotated, unreadable),
    counted per secret."""
    from mailer.models import OAuthClient, OAuthSignIn, OAuthToken, SmtpAccount

    rotated = unreadable = 0
    for model, column in (
        (SmtpAccount, "secret_encrypted"),
        (OAuthToken, "refresh_encrypted"),
        (OAuthToken, "access_encrypted"),
        (OAuthSignIn, "verifier_encrypted"),
        (OAuthSignIn, "code_encrypted"),
        (OAuthClient, "secret_encrypted"),
    ):
        for pk, old in model.objects.exclude(**{column: ""}).values_list("pk", column):
            try:
                new = rotate(old)
            except SecretUnreadable:
                unreadable += 1
                continue
            # Conditional on the old ciphertext: a secret changed meanwhile (a refresh, a
            # new password) is left as it is; it was written with the newest key anyway.
            rotated += model.objects.filter(pk=pk, **{column: old}).update(**{column: new})
    return rotated, unreadable
