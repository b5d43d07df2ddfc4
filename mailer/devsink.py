"""The development sink: a local aiosmtpd server that keeps every message it receives.

Each message is stored as ``<folder>/<stamp>-<n>.eml`` (the exact bytes received, after
SMTP dot-unstuffing) with its envelope beside it in ``<same name>.json``. The ``.eml`` is
written last and atomically (write to a temporary name, then rename), so whoever watches the
folder never reads half a message.

Optional AUTH (PLAIN/LOGIN against a fixed user table) and STARTTLS (a self-signed
certificate generated with ``cryptography`` into the sink folder). No Django here: the
``devsink`` command, ``manage.py up``, the tests and the benchmarks all use this module.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import itertools
import json
import logging
import os
import socket
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# aiosmtpd's default (32 MiB) would refuse a 25 MB attachment once base64 adds a third.
DEFAULT_SIZE_LIMIT = 100 * 1024 * 1024
CERT_NAME = "sink-cert.pem"
log = logging.getLogger("mailer.devsink")
# aiosmtpd logs every command at INFO; the sink reports one line per message instead.
logging.getLogger("mail.log").setLevel(logging.WARNING)
# Plaintext AUTH is deliberate when the sink runs without STARTTLS (see DevSink).
warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
KEY_NAME = "sink-key.pem"


@dataclass
class SinkStats:
    """Counters a benchmark or a test can read while the sink runs (only the sink's
    event-loop thread writes them)."""

    connections: int = 0
    messages: int = 0
    recipients: int = 0
    bytes: int = 0


@dataclass
class _Handler:
    folder: Path | None
    stats: SinkStats
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or b""
        n = next(self._seq)
        self.stats.messages += 1
        self.stats.recipients += len(envelope.rcpt_tos)
        self.stats.bytes += len(data)
        if self.folder is None:
            return "250 2.0.0 OK: accepted (not stored)"
        now = dt.datetime.now(dt.UTC)
        name = f"{now:%Y%m%dT%H%M%S.%f}Z-{os.getpid()}-{n:06d}"
        meta = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "peer": list(session.peer) if isinstance(session.peer, tuple) else session.peer,
            "helo": session.host_name,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "auth_user": session.auth_data if session.authenticated else None,
            "received_at": now.isoformat(),
            "size": len(data),
        }
        _write_atomically(self.folder / f"{name}.json", json.dumps(meta, indent=2).encode())
        _write_atomically(self.folder / f"{name}.eml", data)
        log.info(
            "stored %s.eml: from <%s> to %d recipient(s), %d bytes",
            name,
            envelope.mail_from,
            len(envelope.rcpt_tos),
            len(data),
        )
        return f"250 2.0.0 OK: stored as {name}.eml"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class _Authenticator:
    """Checks PLAIN/LOGIN credentials against a fixed table; a failure returns
    ``handled=False`` so aiosmtpd answers 535 (RFC 4954)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        want = self.users.get(user)
        ok = want is not None and hmac.compare_digest(
            want.encode("utf-8"), bytes(auth_data.password)
        )
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)


def ensure_certificate(folder: Path, hostname: str = "localhost") -> tuple[Path, Path]:
    """Return (cert, key) paths of a self-signed certificate for the sink, creating it the
    first time (or when it expires within a day). Valid for ``localhost``, 127.0.0.1 and ::1.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    now = dt.datetime.now(dt.UTC)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc > now + dt.timedelta(days=1):
            return cert_path, key_path

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Mailroom dev sink ({hostname})")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(hostname),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path.touch(mode=0o600)
    key_path.write_bytes(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class DevSink:
    """A running sink. ``start()`` returns once it accepts connections; ``stop()`` closes it.

    ``folder=None`` keeps nothing (counts only — for benchmarks). ``users`` turns AUTH on
    (PLAIN and LOGIN); ``starttls`` offers STARTTLS with a certificate kept in
    ``cert_folder`` (default: ``folder``). Without STARTTLS, AUTH is allowed in plaintext:
    this is a loopback development server, and a client must opt in to plaintext AUTH anyway.
    """

    def __init__(
        self,
        folder: Path | str | None,
        *,
        host: str = "127.0.0.1",
        port: int = 1025,
        users: Mapping[str, str] | None = None,
        starttls: bool = False,
        cert_folder: Path | str | None = None,
        size_limit: int = DEFAULT_SIZE_LIMIT,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port
        self.stats = SinkStats()
        self.cert_path: Path | None = None
        kwargs: dict[str, Any] = {
            "data_size_limit": size_limit,
            "enable_SMTPUTF8": True,
            "ident": "Mailroom dev sink",
        }
        if starttls:
            where = Path(cert_folder) if cert_folder is not None else self.folder
            if where is None:
                raise ValueError("starttls needs a folder for the certificate")
            self.cert_path, key_path = ensure_certificate(where)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert_path, key_path)
            kwargs["tls_context"] = context
        if users:
            kwargs["authenticator"] = _Authenticator(users)
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = starttls
        stats = self.stats

        class _CountingController(Controller):
            def factory(self) -> SMTP:
                # One SMTP instance per accepted connection.
                stats.connections += 1
                return super().factory()

        self._controller = _CountingController(
            _Handler(self.folder, self.stats), hostname=host, port=port, **kwargs
        )

    def start(self) -> DevSink:
        # aiosmtpd only reports a busy port after its ready timeout (seconds later): try
        # the bind first so the caller hears at once. Raises OSError.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((self.host, self.port))
        self._controller.start()
        # Controller.start() opens one connection itself to check the server is up.
        self.stats.connections = 0
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> DevSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self) -> list[Path]:
        """The stored ``.eml`` files, oldest first."""
        if self.folder is None:
            return []
        return sorted(self.folder.glob("*.eml"))


def parse_auth(spec: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``USER:PASSWORD_ENV`` → (user, password read from that environment variable)."""
    environ = os.environ if environ is None else environ
    user, sep, var = spec.partition(":")
    if not sep or not user or not var:
        raise ValueError(
            f"--auth expects USER:PASSWORD_ENV (a user name and the name of the environment "
            f"variable holding its password), not {spec!r}."
        )
    password = environ.get(var)
    if not password:
        raise ValueError(
            f"The environment variable {var} (the password for sink user {user!r}) is not "
            f"set or empty: export it, then start the sink again."
        )
    return user, password
