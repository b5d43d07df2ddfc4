"""The SMTP client for an account, and the cache of open connections (one per account per
worker process).

A connection is kept for ``MAILROOM_CONNECTION_IDLE_SECONDS``, checked with NOOP before it
is reused after ``MAILROOM_NOOP_AFTER_SECONDS``, taken out while in use, and closed on any
error or when the account's connection settings changed (in any worker: they are re-read
before each use).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from mailer import destinations, oauth
from mailer.models import SmtpAccount


def client_for(account: SmtpAccount, *, transcript: bool = True):
    """An unconnected ``SMTPClient`` configured from the account."""
    from mailer.smtp.client import SMTPClient

    use_auth = account.auth_mechanism != SmtpAccount.AuthMechanism.NONE and bool(account.username)
    secret, hint = None, ""
    if use_auth:
        # Signed in with a provider: a current access token (refreshed here, in the
        # worker, when it is about to expire), and what to change at the provider if its
        # mail server refuses that fresh token; otherwise the stored password or token.
        if account.auth_mechanism == SmtpAccount.AuthMechanism.XOAUTH2:
            secret, hint = oauth.access_token(account), oauth.smtp_auth_advice(account)
        if secret is None:
            secret = account.get_secret()
    return SMTPClient(
        account.host,
        account.port,
        security=account.security,
        local_hostname=None,
        username=account.username if use_auth else None,
        secret=secret,
        auth_mechanism="auto" if account.auth_mechanism == "none" else account.auth_mechanism,
        allow_plaintext_auth=account.allow_plaintext_auth,
        verify=account.verify_tls,
        cadata=account.ca_certificate or None,
        transcript=transcript,
        connect_timeout=settings.MAILROOM_SMTP_CONNECT_TIMEOUT,
        command_timeout=settings.MAILROOM_SMTP_COMMAND_TIMEOUT,
        data_timeout=settings.MAILROOM_SMTP_DATA_TIMEOUT,
        destination_check=destinations.check_for(account),
        auth_hint=hint,
    )


def record_capabilities(account: SmtpAccount, snapshot: dict) -> None:
    now = timezone.now()
    SmtpAccount.objects.filter(pk=account.pk).update(
        capabilities=snapshot, capabilities_seen_at=now
    )
    account.capabilities, account.capabilities_seen_at = snapshot, now


def read_settings(account_pk: int) -> dict[str, Any]:
    """The account's connection settings as they are now (``SmtpAccount.CONNECTION_FIELDS``).

    One primary-key read per message, so its SQL is put together once per process from the
    model's fields (a ``SELECT col, … FROM table WHERE id = %s``) and each value converted
    by its field's ``to_python``, as the ORM would: compiling the ORM's query every time
    cost several times what running it does (the worker's profile)."""
    sql, fields = _settings_query()
    with connection.cursor() as cur:
        cur.execute(sql, [account_pk])
        row = cur.fetchone()
    if row is None:
        raise SmtpAccount.DoesNotExist(f"account {account_pk} was deleted")
    return {f.name: f.to_python(value) for f, value in zip(fields, row, strict=True)}


@functools.cache
def _settings_query() -> tuple[str, tuple]:
    meta, qn = SmtpAccount._meta, connection.ops.quote_name
    fields = tuple(f for f in meta.concrete_fields if f.name in SmtpAccount.CONNECTION_FIELDS)
    columns = ", ".join(qn(f.column) for f in fields)
    return f"SELECT {columns} FROM {qn(meta.db_table)} WHERE {qn(meta.pk.column)} = %s", fields


@dataclass
class _Cached:
    client: Any  # mailer.smtp.client.SMTPClient
    fingerprint: str
    last_used: float


def _idle_limit() -> float:
    return float(settings.MAILROOM_CONNECTION_IDLE_SECONDS)


class ConnectionCache:
    """The open connections of this worker process, by account."""

    def __init__(self) -> None:
        self._conns: dict[int, _Cached] = {}
        self.opened = 0

    def acquire(self, account: SmtpAccount):
        """Return (client, reused). Raises the client's errors when a new connection fails.

        The account's connection settings are read afresh first (:func:`read_settings`):
        the row in hand was read when its message was claimed, and an edit since (a new
        password, another login method) must retire the cached connection in every worker
        and be what the next login uses. One primary-key read per message."""
        for name, value in read_settings(account.pk).items():
            setattr(account, name, value)
        cached = self._conns.pop(account.pk, None)
        if cached is not None:
            idle = time.monotonic() - cached.last_used
            # A connection used a moment ago is not checked with NOOP: if the server has
            # dropped it since, MAIL fails before any data left and the attempt retries on
            # a fresh connection (``attempt.send``).
            if (
                cached.fingerprint == account.connection_fingerprint()
                and idle <= _idle_limit()
                and (idle <= float(settings.MAILROOM_NOOP_AFTER_SECONDS) or cached.client.noop())
            ):
                return cached.client, True
            self._quit(cached.client)
        client = client_for(account)
        caps = client.connect()
        self.opened += 1
        record_capabilities(account, caps.to_dict())
        return client, False

    def release(self, account: SmtpAccount, client) -> None:
        old = self._conns.pop(account.pk, None)
        if old is not None and old.client is not client:
            self._quit(old.client)
        fingerprint = account.connection_fingerprint()
        self._conns[account.pk] = _Cached(client, fingerprint, time.monotonic())
        self.close_idle()

    def drop_unsent(self, account_pk: int) -> None:
        """Close the account's connection if an envelope went out on it ahead, for a message
        that is not sent now (its batch stopped): its DATA may be waiting for data, and
        closing ends that transaction unfinished, so nothing is delivered."""
        cached = self._conns.get(account_pk)
        if cached is not None and cached.client.pending_envelope is not None:
            del self._conns[account_pk]
            cached.client.close()

    def close_idle(self) -> None:
        limit = _idle_limit()
        now = time.monotonic()
        for pk, cached in list(self._conns.items()):
            if now - cached.last_used > limit:
                self._conns.pop(pk, None)
                self._quit(cached.client)

    def close_all(self) -> None:
        while self._conns:
            _, cached = self._conns.popitem()
            self._quit(cached.client)

    @staticmethod
    def _quit(client) -> None:
        try:
            client.quit()
        except Exception:  # the connection is being dropped anyway
            client.close()


#: This worker process's connections.
connections = ConnectionCache()
