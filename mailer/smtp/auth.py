"""SASL mechanisms for SMTP AUTH (RFC 4954): pure encoders, no sockets.

Each mechanism is a generator: the first value it yields is the initial response (base64
text, or ``None`` when the mechanism waits for a challenge); every challenge sent into it
(the decoded bytes of a ``334`` reply) yields the next base64 response. When it has nothing
more to say it returns, and the client cancels with ``*`` (RFC 4954 section 4).
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Generator

from .errors import SMTPCommandArgumentError

__all__ = [
    "MECHANISMS",
    "OAUTH_MECHANISMS",
    "choose_mechanism",
    "exchange",
]

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER")
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
# "auto" with a password. Over TLS the password is protected, and PLAIN is one round trip
# and universally supported; without TLS (only if explicitly allowed) CRAM-MD5 at least
# keeps the password itself off the wire.
_PREFERENCE_TLS = ("PLAIN", "LOGIN", "CRAM-MD5")
_PREFERENCE_PLAINTEXT = ("CRAM-MD5", "PLAIN", "LOGIN")

# SASLprep (RFC 4013 section 2.3) prohibits control characters; XOAUTH2/OAUTHBEARER use
# \x01 and PLAIN uses \x00 as separators, so such characters would also break the framing.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Exchange = Generator[str | None, bytes, None]


def _b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _check(value: str, what: str) -> None:
    if _CONTROL.search(value):
        raise SMTPCommandArgumentError(
            f"The {what} contains a control character (such as a line break); "
            "remove it and try again.",
            phase="auth",
        )


def choose_mechanism(requested: str, offered: tuple[str, ...], *, encrypted: bool) -> str | None:
    """Return the mechanism to use, or ``None`` when the server offers nothing suitable.

    ``requested`` is a mechanism name or ``"auto"``. ``auto`` picks among the password
    mechanisms only: an OAuth2 token must be asked for explicitly (XOAUTH2/OAUTHBEARER).
    """
    requested = requested.upper()
    if requested != "AUTO":
        return requested if requested in offered and requested in MECHANISMS else None
    for mech in _PREFERENCE_TLS if encrypted else _PREFERENCE_PLAINTEXT:
        if mech in offered:
            return mech
    return None


def exchange(
    mechanism: str, username: str, secret: str, *, host: str = "", port: int = 0
) -> Exchange:
    """Return the generator that speaks ``mechanism`` for these credentials."""
    _check(username, "user name")
    _check(secret, "password or token")
    mechanism = mechanism.upper()
    if mechanism == "PLAIN":
        return _plain(username, secret)
    if mechanism == "LOGIN":
        return _login(username, secret)
    if mechanism == "CRAM-MD5":
        return _cram_md5(username, secret)
    if mechanism == "XOAUTH2":
        return _xoauth2(username, secret)
    if mechanism == "OAUTHBEARER":
        return _oauthbearer(username, secret, host, port)
    raise ValueError(f"Unknown AUTH mechanism {mechanism!r}")


def _plain(username: str, secret: str) -> Exchange:
    # RFC 4616: [authzid] NUL authcid NUL passwd, sent as the initial response.
    yield _b64(f"\0{username}\0{secret}")


def _login(username: str, secret: str) -> Exchange:
    # draft-murchison-sasl-login: the server asks "Username:" then "Password:". Follow its
    # prompts when they are recognisable, otherwise answer in order.
    challenge = yield None
    answers = [username, secret]
    while answers:
        prompt = challenge.decode("utf-8", "replace").strip().lower()
        if prompt.startswith("password") and len(answers) == 2:
            answers.pop(0)
        challenge = yield _b64(answers.pop(0))


def _cram_md5(username: str, secret: str) -> Exchange:
    # RFC 2195: username SP hex(HMAC-MD5(secret, challenge)).
    challenge = yield None
    digest = hmac.new(secret.encode("utf-8"), challenge, "md5").hexdigest()
    yield _b64(f"{username} {digest}")


def _xoauth2(username: str, token: str) -> Exchange:
    # Google/Microsoft XOAUTH2. On failure the server sends 334 with a base64 JSON error
    # and waits for an empty line before its final 5xx; without it the session hangs.
    yield _b64(f"user={username}\x01auth=Bearer {token}\x01\x01")
    yield ""


def _oauthbearer(username: str, token: str, host: str, port: int) -> Exchange:
    # RFC 7628 section 3.1. On failure the server sends 334 with a JSON error and the client
    # must answer with a single %x01 (section 3.2.3) to get the final reply.
    _check(host, "server name")
    gs2 = f"n,a={username.replace('=', '=3D').replace(',', '=2C')},"
    yield _b64(f"{gs2}\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
    yield _b64(b"\x01")
