"""The test OAuth2 provider (``tests/oauth_server``, django-oauth-toolkit) as a process on
loopback, and what a test needs of it: its URLs, its users, the count of token requests by
grant type, a way to revoke a user's grant or make the token endpoint misbehave, and a
token check against its introspection endpoint for the SMTP test server."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID = "mailroom-tests"


@dataclass
class OAuthServer:
    base: str  # http://127.0.0.1:PORT
    client_id: str
    client_secret: str = field(repr=False)
    introspection_token: str = field(repr=False)
    control_key: str = field(repr=False)
    users: dict[str, dict]
    process: subprocess.Popen

    @property
    def issuer(self) -> str:
        return f"{self.base}/o"

    def _control(self, path: str) -> dict:
        req = urllib.request.Request(self.base + path, headers={"X-Test-Control": self.control_key})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def stats(self) -> dict[str, int]:
        """Token requests so far, by grant type ("refresh_token", "authorization_code")."""
        return self._control("/test/stats")

    def refreshes(self) -> int:
        return self.stats().get("refresh_token", 0)

    def token_mode(self, mode: str) -> None:
        """ok, down (503), slow, html or garbage: how the token endpoint answers next."""
        self._control(f"/test/mode?token={mode}")

    def discovery_mode(self, mode: str) -> None:
        """ok, or html (a 502 error page): how the discovery document answers next."""
        self._control(f"/test/mode?discovery={mode}")

    def revoke(self, username: str) -> int:
        """Withdraw the user's consent: their tokens stop working at once."""
        return self._control(f"/test/revoke?user={urllib.parse.quote(username)}")["revoked"]

    def introspect(self, token: str) -> dict:
        data = urllib.parse.urlencode({"token": token}).encode()
        req = urllib.request.Request(
            f"{self.issuer}/introspect/", data=data,
            headers={"Authorization": f"Bearer {self.introspection_token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def token_check(self, login: str, token: str) -> bool:
        """For the SMTP test server: the token is live and was issued to ``login``."""
        info = self.introspect(token)
        user = self.users.get(info.get("username", ""))
        return bool(info.get("active")) and user is not None and user["email"] == login

    def consent(self, authorize_url: str, username: str, *, allow: bool = True) -> str:
        """Play the user at the provider (sign in, then allow or deny on the consent page)
        without a browser; returns the URL the provider redirects back to. The browser
        test walks the same pages in Chromium."""
        import requests

        with requests.Session() as s:
            page = s.get(authorize_url, timeout=10)  # → the provider's login page
            form = _form(page.text)
            form.update(username=username, password=self.users[username]["password"])
            page = s.post(page.url, data=form, timeout=10)  # → back to the consent page
            form = _form(page.text)
            if allow:
                form["allow"] = "Authorize"
            else:
                form.pop("allow", None)
            back = s.post(page.url, data=form, allow_redirects=False, timeout=10)
            assert back.status_code in (302, 303), (back.status_code, back.text[:500])
            return back.headers["Location"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _form(html: str) -> dict[str, str]:
    """The named inputs of the first form on a page."""
    from html.parser import HTMLParser

    fields: dict[str, str] = {}

    class _Inputs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "input" and a.get("name") and a.get("type") != "submit":
                fields[a["name"]] = a.get("value") or ""

    _Inputs().feed(html)
    return fields


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def start_oauth_server(
    workdir: Path,
    *,
    redirect_uris: list[str] = ("http://127.0.0.1/oauth/callback/",),
    users: dict[str, dict] | None = None,
    access_seconds: int = 5,
) -> OAuthServer:
    """Start the provider; ``users``: username → {"email", "password"} (generated
    passwords when omitted). Returns once it answers."""
    users = users or {"alice": {"email": "alice@example.test"}}
    for user in users.values():
        user.setdefault("password", secrets.token_urlsafe(12))
    port = free_port()
    control = secrets.token_urlsafe(16)
    client_secret = secrets.token_urlsafe(24)
    spec = {
        "users": [{"username": u, **v} for u, v in users.items()],
        "client": {"id": CLIENT_ID, "secret": client_secret,
                   "redirect_uris": list(redirect_uris)},
    }
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.oauth_server.settings",
        "OAUTH_TEST_SECRET_KEY": control,
        "OAUTH_TEST_DB": str(workdir / "oauth-server.sqlite3"),
        "OAUTH_TEST_RSA_KEY": _rsa_pem(),
        "OAUTH_TEST_ACCESS_SECONDS": str(access_seconds),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.oauth_server", "--port", str(port),
         "--setup", json.dumps(spec)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=open(workdir / "oauth.log", "wb"),
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(
            f"the test OAuth server did not start: {line!r}\n"
            + (workdir / "oauth.log").read_text(errors="replace")[-3000:]
        )
    return OAuthServer(
        base=f"http://127.0.0.1:{port}",
        client_id=CLIENT_ID,
        client_secret=client_secret,
        introspection_token=line.split()[1],
        control_key=control,
        users=users,
        process=proc,
    )


# --- fixtures (a pytest plugin: tests/conftest.py) ------------------------------------------

PROVIDER = "testidp"
WEB_CALLBACK = "http://testserver/accounts/oauth/callback/"  # the test client's host


@pytest.fixture(scope="module")
def oauth_server(tmp_path_factory):
    """The provider, with two users; access tokens live 2 s. Registered way back: the
    loopback callback (any port, RFC 8252) and the Django test client's."""
    server = start_oauth_server(
        tmp_path_factory.mktemp("oauth"),
        redirect_uris=["http://127.0.0.1/oauth/callback/",
                       "http://127.0.0.1/accounts/oauth/callback/", WEB_CALLBACK],
        users={"alice": {"email": "alice@example.test"}, "bob": {"email": "bob@example.test"}},
        access_seconds=2,
    )
    yield server
    server.stop()


@pytest.fixture
def sink(oauth_server):
    """An SMTP test server that takes an XOAUTH2 token only if the provider says it is
    live and issued to the login."""
    from tests.mailer.servers import ScriptedSink

    with ScriptedSink(token_check=oauth_server.token_check) as server:
        yield server


@pytest.fixture
def provider(oauth_server, sink, settings):
    """The provider configured in this process as "testidp", sending through ``sink``."""
    from mailer.oauth import providers

    configure(settings, oauth_server, sink.port)
    return providers.get(PROVIDER)


def provider_env(server: OAuthServer, smtp_port: int) -> dict[str, str]:
    """The settings (as environment variables) that configure the provider as "testidp",
    sending through an SMTP test server on ``smtp_port`` (no TLS: the test servers'
    plaintext). A worker process started with them reads them like production does."""
    prefix = f"MAILROOM_OAUTH_{PROVIDER.upper()}_"
    return {
        "MAILROOM_OAUTH_PROVIDERS": PROVIDER,
        prefix + "ISSUER": server.issuer,
        prefix + "CLIENT_ID": server.client_id,
        prefix + "CLIENT_SECRET": server.client_secret,
        prefix + "LABEL": "Test provider",
        prefix + "SCOPES": "openid email offline_access mail",
        prefix + "SMTP_HOST": "127.0.0.1",
        prefix + "SMTP_PORT": str(smtp_port),
        prefix + "SMTP_SECURITY": "none",
        "MAILROOM_OAUTH_REFRESH_MARGIN_SECONDS": "0.5",
    }


def configure(settings, server: OAuthServer, smtp_port: int) -> None:
    """The same settings, in this process (pytest-django's ``settings`` fixture)."""
    env = provider_env(server, smtp_port)
    prefix = f"MAILROOM_OAUTH_{PROVIDER.upper()}_"
    settings.MAILROOM_OAUTH_PROVIDERS = [PROVIDER]
    settings.MAILROOM_OAUTH_GENERIC = {
        PROVIDER: {k.removeprefix(prefix): v for k, v in env.items() if k.startswith(prefix)}
    }
    settings.MAILROOM_OAUTH_REFRESH_MARGIN_SECONDS = 0.5
