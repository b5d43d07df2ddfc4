"""The operator's destination policy: which addresses Mailroom may open SMTP connections
to (ARCHITECTURE invariant 8). Checked inside the SMTP client on every address a host name
resolves to, after DNS resolution and before any byte is sent (``SMTPClient``'s
``destination_check``), so it holds for delivery, connection checks and test messages alike,
whatever the account form was told.

Without it any user could point an account at 127.0.0.1:6379 or an internal relay and use
the connection check to map the network. In production the internal ranges are denied to
non-staff users by default; the embedded default (``dev.py up``, its Local sink on
127.0.0.1) denies nothing.

Settings (config/settings.py): ``MAILROOM_DESTINATIONS_DENY`` (networks, or ``internal``),
``MAILROOM_DESTINATIONS_ALLOW`` (networks allowed even when denied: an internal relay) and
``MAILROOM_DESTINATIONS_STAFF_EXEMPT``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from functools import lru_cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# What "internal" means: loopback, private (RFC 1918, ULA), shared (CGNAT), link-local (the
# cloud metadata address 169.254.169.254 among them), and what no mail server is on.
INTERNAL = (
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "100.64.0.0/10", "fc00::/7", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128",
    "224.0.0.0/4", "ff00::/8", "240.0.0.0/4", "192.0.0.0/24", "198.18.0.0/15",
)


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    nets: list[Network] = []
    for item in spec:
        if item == "internal":
            nets.extend(ipaddress.ip_network(n) for n in INTERNAL)
        elif item:
            nets.append(ipaddress.ip_network(item, strict=False))
    return tuple(nets)


def _address(text: str) -> Address:
    ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return ip


def refusal(address: str) -> str | None:
    """Why ``address`` may not be connected to, in plain words, or None when it may."""
    ip = _address(address)
    allowed = _networks(tuple(settings.MAILROOM_DESTINATIONS_ALLOW))
    if any(ip in net for net in allowed if net.version == ip.version):
        return None
    denied = _networks(tuple(settings.MAILROOM_DESTINATIONS_DENY))
    if any(ip in net for net in denied if net.version == ip.version):
        return (
            f"Mailroom is not allowed to connect to {ip} (an internal or reserved network "
            "address, which this server's operator has closed to outgoing mail). Check the "
            "account's host name, or ask the operator to allow this server."
        )
    return None


def check_for(account) -> Callable[[str], str | None] | None:
    """The check for connections made for ``account`` (None: nothing is checked). Its
    owner is read only when there is a policy to apply."""
    if not settings.MAILROOM_DESTINATIONS_DENY:
        return None
    if settings.MAILROOM_DESTINATIONS_STAFF_EXEMPT and account.owner.is_staff:
        return None
    return refusal


class Refused(OSError):
    """Every address the host name resolves to is closed by the policy; ``reason`` says
    why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def connect(host: str, port: int, *, timeout: float | None,
            check: Callable[[str], str | None] | None) -> socket.socket:
    """A TCP connection to ``host``:``port`` for the clients Mailroom drives through other
    libraries (OAuth2 over HTTP, IMAP): each address the name resolves to passes ``check``
    (``check_for``; None: no policy) before it is connected to, so no DNS answer can swap an
    internal address in between. Raises :class:`Refused` when the policy closed every
    address, ``OSError`` when none answered. (The SMTP client applies the same check in
    its own connect, ``SMTPClient.destination_check``.)"""
    refusals: list[str] = []
    last_error: OSError | None = None
    for family, kind, proto, _name, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        reason = check(address[0]) if check is not None else None
        if reason:
            refusals.append(reason)
            continue
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    if last_error is not None:
        raise last_error
    raise Refused(refusals[0] if refusals else f"{host} has no address")
