"""Access tokens for OAuth2 accounts: refreshed shortly before they expire, one refresh at a
time per account across every worker and host, the result saved in one UPDATE.

:func:`access_token` is what the SMTP side calls (``delivery.cache.client_for``) for an
account signed in with a provider. It returns the stored access token while it has more
than ``MAILROOM_OAUTH_REFRESH_MARGIN_SECONDS`` left. Otherwise one worker takes the
account's refresh lease (a conditional UPDATE of ``refreshing_until``: on PostgreSQL and
SQLite alike, exactly one of the racing UPDATEs matches), re-reads the row, asks the
provider, and writes the new access token, its expiry and a rotated refresh token together
while releasing the lease — one statement, one durable commit. The others wait for that
write and use its token: one refresh per expiry, however many workers need the token.

No transaction is open while the provider is asked. A worker that dies holding the lease
lets it run out (``MAILROOM_OAUTH_LEASE_SECONDS``, longer than a request may take) and the
next refresh starts again from the stored refresh token. A provider that rotated the
refresh token in that window and revoked the old one at once makes that refresh fail with
invalid_grant, which pauses the account for a reconnect: mail waits, nothing is lost
(Google does not rotate; Microsoft keeps the old token valid).

Errors say what went wrong in plain words and are classified by ``mailer.policy``:
:class:`GrantRevoked` (invalid_grant: revoked, password changed, consent withdrawn) and
:class:`ClientRejected` (the operator's client id or secret) pause the account;
:class:`ProviderUnavailable` (down, slow, an answer that is not a token response) defers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import requests
from authlib.integrations.base_client.errors import OAuthError as _AuthlibError
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from mailer import crypto
from mailer.models import OAuthToken
from mailer.oauth import http, providers

log = logging.getLogger("mailer.oauth")

__all__ = [
    "ClientRejected",
    "GrantRevoked",
    "OAuthError",
    "ProviderUnavailable",
    "access_token",
    "smtp_auth_advice",
    "store",
]


class OAuthError(Exception):
    """A token could not be had; ``str()`` is the plain-words reason for the page."""


class GrantRevoked(OAuthError):
    """The provider no longer accepts the account's refresh token: the user must sign in
    again ("Reconnect")."""


class ClientRejected(OAuthError):
    """The provider refused Mailroom itself (client id or secret): the operator must fix
    the settings."""


class ProviderUnavailable(OAuthError):
    """The provider is down, slow or answered nonsense: try again later."""


def _reconnect(label: str) -> str:
    return (
        f"{label} no longer accepts Mailroom's sign-in for this account (access was "
        "revoked, the password changed or consent was withdrawn). Click “Reconnect” on the "
        "account page and sign in again; the account's mail waits until then."
    )


_GONE = "The account was deleted while Mailroom was renewing its sign-in."


def _expires_at(token: dict, now: datetime) -> datetime:
    # expires_in from the moment the answer came (Authlib's expires_at is rounded down to
    # the second); expires_at only when the provider sent nothing else.
    if token.get("expires_in"):
        return now + timedelta(seconds=float(token["expires_in"]))
    if token.get("expires_at"):
        return datetime.fromtimestamp(float(token["expires_at"]), tz=UTC)
    return now + timedelta(hours=1)


def store(token_row: OAuthToken, token: dict) -> None:
    """Put a token response (access token, expiry, refresh token) on an unsaved or fresh
    row, encrypted. The caller saves it."""
    now = timezone.now()
    token_row.access_encrypted = crypto.encrypt(token["access_token"])
    token_row.access_expires_at = _expires_at(token, now)
    if token.get("refresh_token"):
        token_row.refresh_encrypted = crypto.encrypt(token["refresh_token"])
    token_row.refreshed_at = now


def _fresh(row: OAuthToken, now: datetime) -> bool:
    margin = timedelta(seconds=float(settings.MAILROOM_OAUTH_REFRESH_MARGIN_SECONDS))
    return bool(
        row.access_encrypted and row.access_expires_at and row.access_expires_at - margin > now
    )


def access_token(account) -> str | None:
    """A valid access token for ``account``, refreshed when it is about to expire; None
    when the account is not signed in with a provider. Raises :class:`OAuthError`
    subclasses."""
    first = OAuthToken.objects.filter(account_id=account.pk).only("provider").first()
    if first is None:
        return None
    provider = providers.get(first.provider)
    label = provider.label if provider else first.provider
    lease = float(settings.MAILROOM_OAUTH_LEASE_SECONDS)
    give_up = time.monotonic() + lease + float(settings.MAILROOM_OAUTH_HTTP_TIMEOUT)
    while True:
        row = OAuthToken.objects.filter(account_id=account.pk).first()
        if row is None:
            raise OAuthError(_GONE)
        now = timezone.now()
        if row.revoked_at is not None:
            raise GrantRevoked(_reconnect(label))
        if _fresh(row, now):
            return crypto.decrypt(row.access_encrypted)
        if provider is None:
            raise ClientRejected(
                f"Sign-in with “{label}” is no longer configured on this Mailroom, so the "
                "account's token cannot be renewed. Ask the operator to set it up again, or "
                "change the account to log in with a password."
            )
        mine = now + timedelta(seconds=lease)
        taken = OAuthToken.objects.filter(
            Q(refreshing_until__isnull=True) | Q(refreshing_until__lt=now), pk=row.pk
        ).update(refreshing_until=mine)
        if taken:
            return _refresh(provider, row.pk, mine, label)
        if time.monotonic() > give_up:
            raise ProviderUnavailable(
                f"Another worker has been renewing the {label} sign-in for too long. "
                "Mailroom will try again later."
            )
        time.sleep(0.05)  # another worker is refreshing: use its token when it is written


def smtp_auth_advice(account) -> str:
    """What to change at the account's provider when its mail server refuses a fresh
    token (SMTP AUTH off for the mailbox…); empty when not signed in with one."""
    row = OAuthToken.objects.filter(account_id=account.pk).only("provider").first()
    provider = providers.get(row.provider) if row else None
    return provider.smtp_auth_advice if provider else ""


def _refresh(provider, pk: int, lease: datetime, label: str) -> str:
    """Holding the lease: ask the provider, write the result and free the lease in one
    UPDATE (conditional on the lease still being ours)."""
    row = OAuthToken.objects.filter(pk=pk).first()  # re-read: a refresh may have been written
    if row is None:
        raise OAuthError(_GONE)
    now = timezone.now()
    if _fresh(row, now):
        OAuthToken.objects.filter(pk=pk, refreshing_until=lease).update(refreshing_until=None)
        return crypto.decrypt(row.access_encrypted)
    try:
        token = _ask(provider, crypto.decrypt(row.refresh_encrypted), label)
    except OAuthError as exc:
        values: dict = {"refreshing_until": None}
        if isinstance(exc, GrantRevoked):
            values["revoked_at"] = now
        OAuthToken.objects.filter(pk=pk, refreshing_until=lease).update(**values)
        raise
    store(row, token)
    # Conditional on the lease: an account deleted meanwhile matches nothing and stays
    # deleted; the token is still good for the attempt that asked.
    OAuthToken.objects.filter(pk=pk, refreshing_until=lease).update(
        access_encrypted=row.access_encrypted,
        access_expires_at=row.access_expires_at,
        refresh_encrypted=row.refresh_encrypted,
        refreshed_at=row.refreshed_at,
        refreshing_until=None,
        updated_at=row.refreshed_at,
    )
    log.info("oauth account=%s refreshed, expires %s", row.account_id, row.access_expires_at)
    return token["access_token"]


def _ask(provider, refresh_token: str, label: str) -> dict:
    """One refresh request; provider answers become :class:`OAuthError` subclasses."""
    url = endpoints(provider)["token_endpoint"]
    try:
        with transport_errors(label, "Mailroom will try again later."):
            with http.session(provider) as session:
                token = session.refresh_token(
                    url, refresh_token=refresh_token, timeout=http.timeout()
                )
    except _AuthlibError as exc:
        if exc.error == "invalid_grant":
            raise GrantRevoked(_reconnect(label)) from None
        if exc.error in ("invalid_client", "unauthorized_client"):
            raise ClientRejected(
                f"{label} refused Mailroom's own registration ({exc.error}). The operator "
                "must check the client id and secret in Mailroom's settings; the account's "
                "mail waits until then."
            ) from None
        raise ProviderUnavailable(
            f"{label} could not renew the sign-in ({exc.error}). Mailroom will try again later."
        ) from None
    if not isinstance(token, dict) or not token.get("access_token"):
        raise ProviderUnavailable(
            f"{label}'s sign-in service answered without an access token. Mailroom will try "
            "again later."
        )
    return dict(token)


@contextmanager
def transport_errors(label: str, then: str) -> Iterator[None]:
    """Around a request to a provider: a destination the operator's policy refuses becomes
    :class:`ClientRejected`; no answer, an HTTP error or a body that is not JSON becomes
    :class:`ProviderUnavailable`, its words ending with ``then`` (what happens next)."""
    try:
        yield
    except http.DestinationRefused as exc:
        raise ClientRejected(exc.reason) from None
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(
            f"{label}'s sign-in service did not answer properly ({_short(exc)}). {then}"
        ) from None


def _short(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return "not a token response"


def endpoints(provider) -> dict[str, str]:
    """The provider's token and key endpoints: its own settings, or its discovery document
    (fetched once per process)."""
    if not provider.discovered:
        return {"token_endpoint": provider.token_url, "jwks_uri": provider.jwks_url,
                "authorization_endpoint": provider.authorize_url, "issuer": provider.issuer}
    return _discover(provider)


_DISCOVERED: dict[str, dict[str, str]] = {}


def _discover(provider) -> dict[str, str]:
    cached = _DISCOVERED.get(provider.issuer)
    if cached is not None:
        return cached
    url = f"{provider.issuer}/.well-known/openid-configuration"
    with transport_errors(provider.label, "Mailroom will try again later."):
        with http.session(provider) as session:
            resp = session.get(url, timeout=http.timeout(), withhold_token=True)
            resp.raise_for_status()
            doc = resp.json()
    needed = ("authorization_endpoint", "token_endpoint", "jwks_uri", "issuer")
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k), str) for k in needed):
        raise ProviderUnavailable(
            f"{provider.label}'s discovery document ({url}) lacks its endpoints. Ask the "
            "operator to check MAILROOM_OAUTH_*_ISSUER."
        )
    if doc["issuer"].rstrip("/") != provider.issuer:
        raise ClientRejected(
            f"{provider.label}'s discovery document names another issuer "
            f"({doc['issuer']}) than the one configured ({provider.issuer})."
        )
    found = {k: doc[k] for k in needed}
    _DISCOVERED[provider.issuer] = found
    return found
