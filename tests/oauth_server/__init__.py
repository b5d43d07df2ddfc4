"""A real OAuth2 / OpenID Connect authorization server for the tests: django-oauth-toolkit
in a Django project of its own, run as a separate process on loopback
(``python -m tests.oauth_server``; started by ``tests/oauth.py``). Mailroom talks to it
only over HTTP, as it would to Google or Microsoft.

PKCE is required, refresh tokens rotate (the old one is revoked at once: no grace period),
access tokens live a few seconds, ID tokens are signed with an RSA key generated at start.
A few test-only endpoints (``/test/…``) count the token requests by grant type, revoke a
user's grant, and make the token endpoint misbehave (down, slow, HTML, garbage).
"""
