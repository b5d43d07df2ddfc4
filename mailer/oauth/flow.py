"""The authorization-code flow with PKCE, both halves Mailroom plays in it.

:func:`start` makes a fresh ``state`` (bound by the caller to the user's session and
popped on return, so it works once), a PKCE verifier and an OpenID Connect ``nonce``;
:func:`begin` the URL the browser is sent to with them (``mailer.oauth.signins`` runs it
in a worker). :func:`finish` (in a worker: it talks to the provider) exchanges the code
for tokens, checks the ID token — signature from the provider's keys, issuer, audience,
expiry and nonce — and returns who signed in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError as _AuthlibError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from mailer.oauth import http
from mailer.oauth.providers import Provider
from mailer.oauth.tokens import (
    ClientRejected,
    OAuthError,
    ProviderUnavailable,
    endpoints,
    transport_errors,
)

__all__ = ["Identity", "Started", "begin", "finish", "start"]


@dataclass(frozen=True)
class Started:
    """The secrets of one sign-in, made before the user leaves for the provider."""

    state: str
    code_verifier: str = field(repr=False)
    nonce: str


@dataclass(frozen=True)
class Identity:
    subject: str
    email: str
    token: dict = field(repr=False)  # access_token, refresh_token, expires_in / expires_at


def start() -> Started:
    """Fresh ``state``, PKCE verifier and nonce for one sign-in (nothing is sent)."""
    return Started(secrets.token_urlsafe(24), generate_token(64), secrets.token_urlsafe(24))


def begin(provider: Provider, redirect_uri: str, started: Started, *,
          login_hint: str = "") -> str:
    """The authorization URL for ``provider``: where the browser goes to sign in. Reads a
    generic provider's discovery document (outbound: a worker's job)."""
    authorize = endpoints(provider)["authorization_endpoint"]
    params = dict(provider.authorize_params)
    if login_hint:
        params["login_hint"] = login_hint
    with http.session(provider, scope=" ".join(provider.scopes), redirect_uri=redirect_uri,
                      code_challenge_method="S256") as session:
        url, _state = session.create_authorization_url(
            authorize, state=started.state, code_verifier=started.code_verifier,
            nonce=started.nonce, **params
        )
    return url


def finish(provider: Provider, *, code: str, code_verifier: str, redirect_uri: str,
           nonce: str) -> Identity:
    """Exchange ``code`` for tokens and check the ID token. Raises ``OAuthError``."""
    label = provider.label
    ends = endpoints(provider)
    try:
        with transport_errors(label, "Try again in a moment."):
            with http.session(provider, redirect_uri=redirect_uri) as session:
                token = session.fetch_token(
                    ends["token_endpoint"], code=code, code_verifier=code_verifier,
                    grant_type="authorization_code", timeout=http.timeout(),
                )
                keys = _keys(session, ends["jwks_uri"], label)
    except _AuthlibError as exc:
        if exc.error in ("invalid_client", "unauthorized_client"):
            raise ClientRejected(
                f"{label} refused Mailroom's own registration ({exc.error}). Ask the "
                "operator to check the client id and secret."
            ) from None
        raise OAuthError(
            f"{label} did not accept the sign-in ({exc.error}): it may have taken too long "
            f"or been used twice. Start again with “Sign in with {label}”."
        ) from None
    if not token.get("access_token") or not token.get("refresh_token"):
        raise OAuthError(
            f"{label} gave no lasting access (no refresh token), so Mailroom could not keep "
            f"sending. Start again with “Sign in with {label}” and allow offline access."
        )
    claims = _id_claims(provider, token.get("id_token", ""), keys, nonce)
    email = claims.get("email") or claims.get("preferred_username") or ""
    if not isinstance(email, str) or "@" not in email or claims.get("email_verified") is False:
        raise OAuthError(
            f"{label} did not say which verified address you signed in with. Sign in with "
            "an account that has an email address."
        )
    return Identity(subject=str(claims["sub"]), email=email, token=dict(token))


def _keys(session, url: str, label: str) -> KeySet:
    resp = session.get(url, timeout=http.timeout(), withhold_token=True)
    resp.raise_for_status()
    try:
        return KeySet.import_key_set(resp.json())
    except (ValueError, JoseError):
        raise ProviderUnavailable(
            f"{label} published signing keys Mailroom cannot read. Try again later."
        ) from None


def _id_claims(provider: Provider, id_token: str, keys: KeySet, nonce: str) -> dict:
    bad = OAuthError(
        f"{provider.label}'s answer did not prove who signed in (its ID token was missing, "
        "expired, or not meant for Mailroom). Start again with “Sign in with "
        f"{provider.label}”."
    )
    if not id_token:
        raise bad
    try:
        decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "PS256"])
        claims = decoded.claims
        issuer = provider.issuer
        if provider.issuer_has_tenant:
            issuer = issuer.replace("{tenantid}", str(claims.get("tid", "")))
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer or endpoints(provider)["issuer"]},
            aud={"essential": True, "value": provider.client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
            leeway=60,
        ).validate(claims)
    except (JoseError, ValueError):
        raise bad from None
    return claims
