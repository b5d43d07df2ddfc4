"""HTTP to OAuth providers: an Authlib ``OAuth2Session`` whose every connection passes the
operator's destination policy after DNS resolution (ARCHITECTURE invariant 8), as SMTP
connections do, and whose requests end within a deadline. Only a worker calls this.

The policy is applied where the socket is made (urllib3's ``_new_conn``): each address the
host name resolves to is checked, and only a checked address is connected to, so no DNS
answer can swap in an internal address between the check and the connection. TLS is then
verified against the host name as usual.
"""

from __future__ import annotations

import socket

from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from mailer import destinations

__all__ = ["DestinationRefused", "session", "timeout"]


class DestinationRefused(NewConnectionError):
    """Every address of the provider's host is closed by the destination policy."""

    def __init__(self, conn, reason: str) -> None:
        super().__init__(conn, reason)
        self.reason = reason


def _connect(conn) -> socket.socket:
    timeout = conn.timeout if isinstance(conn.timeout, int | float) else None
    check = destinations.refusal if settings.MAILROOM_DESTINATIONS_DENY else None
    try:
        return destinations.connect(conn._dns_host, conn.port, timeout=timeout, check=check)
    except destinations.Refused as exc:
        raise DestinationRefused(conn, exc.reason) from None
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from None


class _Checked(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)


class _CheckedTLS(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Checked


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedTLS


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


def timeout() -> tuple[float, float]:
    """(connect, read) seconds for one request to a provider."""
    seconds = float(settings.MAILROOM_OAUTH_HTTP_TIMEOUT)
    return (min(5.0, seconds), seconds)


def session(provider, **kwargs) -> OAuth2Session:
    """An OAuth2 client session for ``provider`` (no redirects followed: a token endpoint
    that redirects is misbehaving, and a redirect could lead past the policy's intent)."""
    s = OAuth2Session(provider.client_id, provider.client_secret, **kwargs)
    s.max_redirects = 0
    s.trust_env = False  # no proxy or .netrc from the environment
    for prefix in ("http://", "https://"):
        s.mount(prefix, _Adapter())
    return s
