"""Accounts that sign in with an OAuth2 provider ("Sign in with Google / Microsoft").

- ``providers``: what the operator configured (settings), one ``Provider`` each;
- ``http``: Authlib sessions whose connections pass the destination policy, with deadlines;
- ``tokens``: the access token an SMTP login uses, refreshed once per expiry across all
  workers, and the errors that pause (revoked grant) or defer (provider down) the account.

Only workers talk to providers; the web only redirects the browser to them.
"""

from mailer.oauth.tokens import (
    ClientRejected,
    GrantRevoked,
    OAuthError,
    ProviderUnavailable,
    access_token,
    smtp_auth_advice,
)

__all__ = ["ClientRejected", "GrantRevoked", "OAuthError", "ProviderUnavailable", "access_token",
           "smtp_auth_advice"]
