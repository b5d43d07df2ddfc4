"""The OAuth2 providers the operator configured: Google, Microsoft and any OpenID Connect
provider given by its issuer URL. With none configured, "Sign in with …" does not appear.

Settings (``config/settings.py``, ``.env.example``):

- ``MAILROOM_OAUTH_GOOGLE_CLIENT_ID`` / ``_CLIENT_SECRET``;
- ``MAILROOM_OAUTH_MICROSOFT_CLIENT_ID`` / ``_CLIENT_SECRET`` / ``_TENANT`` (``common``,
  ``organizations``, ``consumers`` or a tenant id);
- ``MAILROOM_OAUTH_PROVIDERS``: names of generic providers, each with
  ``MAILROOM_OAUTH_<NAME>_ISSUER``, ``_CLIENT_ID``, ``_CLIENT_SECRET`` and optionally
  ``_LABEL``, ``_SCOPES``, ``_SMTP_HOST``, ``_SMTP_PORT``, ``_SMTP_SECURITY``.

or the Django admin (``mailer.models.OAuthClient``), whose rows replace the settings' of
the same name.

Endpoints of a generic provider come from its discovery document
(``<issuer>/.well-known/openid-configuration``), read by a worker when first needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

__all__ = ["Provider", "configured", "get"]

GOOGLE_SCOPES = ("openid", "email", "https://mail.google.com/")
MICROSOFT_SCOPES = (
    "openid",
    "email",
    "offline_access",
    "https://outlook.office.com/SMTP.Send",
    "https://outlook.office.com/IMAP.AccessAsUser.All",
)


@dataclass(frozen=True)
class Provider:
    """One provider: who Mailroom is there (client id and secret), where to send the user
    and where to ask for tokens, which scopes SMTP (and IMAP) need, and the SMTP server an
    account signed in with it sends through."""

    key: str
    label: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    smtp_host: str
    smtp_port: int
    smtp_security: str
    issuer: str = ""  # OpenID Connect issuer: the ID token's "iss", and discovery's base
    authorize_url: str = ""
    token_url: str = ""
    jwks_url: str = ""
    # Extra parameters of the authorization request (Google returns a refresh token only
    # with access_type=offline, and again on a second sign-in only with prompt=consent).
    authorize_params: tuple[tuple[str, str], ...] = ()
    # Microsoft's multi-tenant issuer names the tenant of each token: "{tenantid}".
    issuer_has_tenant: bool = False
    # Where to change what the 535 of a fresh token is about (plain words for the page).
    smtp_auth_advice: str = ""

    @property
    def discovered(self) -> bool:
        """Whether the endpoints come from the issuer's discovery document."""
        return not self.token_url


def _google(key: str, cid: str, secret: str, label: str = "") -> Provider | None:
    if not cid:
        return None
    return Provider(
        key=key,
        label=label or "Google",
        client_id=cid,
        client_secret=secret,
        scopes=GOOGLE_SCOPES,
        smtp_host="smtp.gmail.com",
        smtp_port=587,
        smtp_security="starttls",
        issuer="https://accounts.google.com",
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        jwks_url="https://www.googleapis.com/oauth2/v3/certs",
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
        smtp_auth_advice=(
            "Google accepted the sign-in but its mail server refused it. In a Google "
            "Workspace, the administrator must allow the account to use SMTP (Admin console "
            "→ Apps → Google Workspace → Gmail → End user access) and allow Mailroom's app."
        ),
    )


def _microsoft(key: str, cid: str, secret: str, tenant: str, label: str = "") -> Provider | None:
    if not cid:
        return None
    tenant = tenant or "common"
    base = f"https://login.microsoftonline.com/{tenant}"
    multi = tenant in ("common", "organizations", "consumers")
    return Provider(
        key=key,
        label=label or "Microsoft",
        client_id=cid,
        client_secret=secret,
        scopes=MICROSOFT_SCOPES,
        smtp_host="smtp.office365.com",
        smtp_port=587,
        smtp_security="starttls",
        issuer="https://login.microsoftonline.com/{tenantid}/v2.0" if multi else f"{base}/v2.0",
        authorize_url=f"{base}/oauth2/v2.0/authorize",
        token_url=f"{base}/oauth2/v2.0/token",
        jwks_url=f"{base}/discovery/v2.0/keys",
        issuer_has_tenant=multi,
        smtp_auth_advice=(
            "Microsoft accepted the sign-in but Exchange Online refused it: SMTP AUTH is "
            "probably turned off for this mailbox. In the Microsoft 365 admin center, open "
            "the user → Mail → Manage email apps and turn on Authenticated SMTP (or ask your "
            "administrator), then reconnect."
        ),
    )


def _generic(name: str, value: dict[str, str]) -> Provider | None:
    """A provider known by its issuer; ``value``: ISSUER, CLIENT_ID, CLIENT_SECRET, LABEL,
    SCOPES, SMTP_HOST, SMTP_PORT, SMTP_SECURITY (the settings' suffixes)."""
    prefix = f"MAILROOM_OAUTH_{name.upper()}_"
    issuer = value.get("ISSUER", "")
    if not issuer or not value.get("CLIENT_ID"):
        return None
    scopes = tuple(value.get("SCOPES", "openid email offline_access").split())
    return Provider(
        key=name.lower(),
        label=value.get("LABEL") or name,
        client_id=value["CLIENT_ID"],
        client_secret=value.get("CLIENT_SECRET", ""),
        scopes=scopes,
        smtp_host=value.get("SMTP_HOST", ""),
        smtp_port=int(value.get("SMTP_PORT") or 587),
        smtp_security=value.get("SMTP_SECURITY") or "starttls",
        issuer=issuer.rstrip("/"),
        smtp_auth_advice=(
            f"The provider accepted the sign-in but the mail server refused it. Check with "
            f"the provider's administrator that the account may send mail over SMTP with "
            f"OAuth2 (the settings {prefix}SCOPES and {prefix}SMTP_HOST)."
        ),
    )


def _from_settings() -> list[Provider | None]:
    found = [
        _google("google", settings.MAILROOM_OAUTH_GOOGLE_CLIENT_ID,
                settings.MAILROOM_OAUTH_GOOGLE_CLIENT_SECRET),
        _microsoft("microsoft", settings.MAILROOM_OAUTH_MICROSOFT_CLIENT_ID,
                   settings.MAILROOM_OAUTH_MICROSOFT_CLIENT_SECRET,
                   settings.MAILROOM_OAUTH_MICROSOFT_TENANT),
    ]
    return found + [_generic(name, settings.MAILROOM_OAUTH_GENERIC.get(name, {}))
                    for name in settings.MAILROOM_OAUTH_PROVIDERS]


def _from_admin(row) -> Provider | None:
    """A provider set up in the Django admin (``mailer.models.OAuthClient``)."""
    secret = row.get_secret()
    if row.kind == row.Kind.GOOGLE:
        return _google(row.key, row.client_id, secret, row.label)
    if row.kind == row.Kind.MICROSOFT:
        return _microsoft(row.key, row.client_id, secret, row.tenant, row.label)
    values = {"ISSUER": row.issuer, "CLIENT_ID": row.client_id, "CLIENT_SECRET": secret,
              "LABEL": row.label, "SCOPES": row.scopes, "SMTP_HOST": row.smtp_host,
              "SMTP_PORT": str(row.smtp_port or ""), "SMTP_SECURITY": row.smtp_security}
    return _generic(row.key, {k: v for k, v in values.items() if v})


def configured() -> dict[str, Provider]:
    """Every provider with a client id, by key, in the order the sign-in buttons show:
    those of the settings, then those of the admin (which replace a setting's of the same
    key; one switched off in the admin hides it)."""
    from mailer.models import OAuthClient

    found = {p.key: p for p in _from_settings() if p is not None}
    for row in OAuthClient.objects.order_by("pk"):
        found.pop(row.key, None)
        provider = _from_admin(row) if row.enabled else None
        if provider is not None:
            found[provider.key] = provider
    return found


def get(key: str) -> Provider | None:
    return configured().get(key)
