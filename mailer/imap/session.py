"""IMAP sessions for an account (imapclient), under the same rules as its SMTP connections:
the destination policy is applied to each address the host name resolves to before it is
connected to, TLS (implicit, or STARTTLS — never a fallback to plaintext) is verified
against the host name with the account's CA option, and every read has a deadline.

Errors become :class:`ImapError` whose ``str()`` is the plain-words reason and whose
``server`` is the server's own words (never a password or a token).
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailer import destinations

__all__ = ["SENT_NAMES", "ImapError", "Probe", "append_once", "find_sent", "open_session",
           "errors", "probe"]

#: Where mail programs keep sent mail, when the server names no \Sent folder (RFC 6154).
SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "[Gmail]/Sent Mail", "INBOX.Sent",
              "INBOX/Sent")


class ImapError(Exception):
    """What went wrong, in plain words; ``server``: the server's words, if it said any;
    ``transient``: worth trying again later (a dropped connection, a busy server)."""

    def __init__(self, message: str, *, server: str = "", transient: bool = True) -> None:
        super().__init__(message)
        self.server = server
        self.transient = transient


@dataclass
class Probe:
    capabilities: list[str]
    folders: list[str]
    sent_folder: str | None
    verdict: str
    transcript: list[str] = field(default_factory=list)


class _Socketed(imaplib.IMAP4):
    """imaplib's IMAP4 on a socket Mailroom opened (policy-checked), TLS-wrapped or not."""

    def __init__(self, host: str, port: int, opener, ssl_context: ssl.SSLContext | None):
        self._opener, self.ssl_context = opener, ssl_context
        super().__init__(host, port)

    def _create_socket(self, timeout):
        sock = self._opener()
        if self.ssl_context is not None:
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        return sock


class _Client(IMAPClient):
    def __init__(self, host: str, port: int, *, opener, tls_context, implicit_tls: bool,
                 timeout: float) -> None:
        self._opener, self._implicit = opener, implicit_tls
        super().__init__(host, port=port, ssl=implicit_tls, ssl_context=tls_context,
                         timeout=timeout)

    def _create_IMAP4(self):  # noqa: N802 - imapclient's name
        return _Socketed(self.host, self.port, self._opener,
                         self.ssl_context if self._implicit else None)


def _tls_context(account) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=account.ca_certificate or None)
    if account.ca_certificate:
        context.load_default_certs()
    if not account.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _login(client: IMAPClient, account, imap) -> None:
    from mailer.oauth import access_token

    username = imap.username or account.username
    secret = imap.get_secret()
    if not secret and account.auth_mechanism == "XOAUTH2":
        token = access_token(account)  # the SMTP side's sign-in: the same token
        client.oauth2_login(username, token or account.get_secret())
        return
    client.login(username, secret or account.get_secret())


@contextmanager
def open_session(account, *, timeout: float | None = None) -> Iterator[IMAPClient]:
    """A logged-in session with the account's IMAP server. Raises :class:`ImapError`."""
    imap = account.imap
    seconds = float(timeout or settings.MAILROOM_IMAP_TIMEOUT)
    check = destinations.check_for(account)
    where = f"{imap.host}:{imap.port}"

    def opener() -> socket.socket:
        return destinations.connect(imap.host, imap.port, timeout=seconds, check=check)

    context = _tls_context(account)
    try:
        client = _Client(imap.host, imap.port, opener=opener, tls_context=context,
                         implicit_tls=imap.security == "tls", timeout=seconds)
    except destinations.Refused as exc:
        raise ImapError(exc.reason, transient=False) from None
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(_CERT.format(where=where), server=exc.verify_message or "",
                        transient=False) from None
    except (OSError, IMAPClientError) as exc:
        raise ImapError(f"Could not connect to the IMAP server {where} ({_short(exc)}). Check "
                        "the IMAP host and port.", server=str(exc)) from None
    try:
        with errors(where):
            if imap.security == "starttls":
                if b"STARTTLS" not in client.capabilities():
                    raise ImapError(f"{where} does not offer STARTTLS, and Mailroom never logs "
                                    "in over plaintext. Choose implicit TLS (usually port "
                                    "993).", transient=False)
                client.starttls(context)
            _login(client, account, imap)
        yield client
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the session is over either way
            client.shutdown()


_CERT = ("The IMAP server {where}'s certificate could not be verified, so Mailroom did not "
         "log in. Check the host name, or add the server's CA certificate to the account.")


@contextmanager
def errors(where: str) -> Iterator[None]:
    try:
        yield
    except ImapError:
        raise
    except LoginError as exc:
        raise ImapError(f"{where} refused the IMAP login. Check the IMAP username and password "
                        "(by default the account's own).", server=_words(exc),
                        transient=False) from None
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(_CERT.format(where=where), server=exc.verify_message or "",
                        transient=False) from None
    except (OSError, IMAPClientError, imaplib.IMAP4.abort) as exc:
        raise ImapError(f"The IMAP server {where} dropped the connection or failed "
                        f"({_short(exc)}). Mailroom will try again later.",
                        server=_words(exc)) from None


def _words(exc: Exception) -> str:
    text = str(exc)
    return text.removeprefix("b'").removesuffix("'")[:500]


def _short(exc: Exception) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return type(exc).__name__


def find_sent(client: IMAPClient, chosen: str = "") -> tuple[str | None, list[str]]:
    """The Sent folder: ``chosen`` if it exists, else the one flagged \\Sent (RFC 6154),
    else one of the usual names. Returns (folder or None, every folder)."""
    listed = client.list_folders()
    names = [name for _flags, _sep, name in listed]
    if chosen:
        return (chosen if chosen in names else None), names
    for flags, _sep, name in listed:
        if b"\\Sent" in flags:
            return name, names
    lowered = {n.lower(): n for n in names}
    for candidate in SENT_NAMES:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()], names
    return None, names


def probe(account, *, timeout: float | None = None) -> Probe:
    """What "Test connection" shows of the IMAP side. Raises :class:`ImapError`."""
    imap = account.imap
    where = f"{imap.host}:{imap.port}"
    with open_session(account, timeout=timeout) as client, errors(where):
        caps = sorted(c.decode() if isinstance(c, bytes) else str(c)
                      for c in client.capabilities())
        sent, folders = find_sent(client, imap.sent_folder)
    if sent:
        verdict = f"Logged in to {where}; sent mail is saved to “{sent}”."
    elif imap.sent_folder:
        verdict = (f"Logged in to {where}, but it has no folder “{imap.sent_folder}”. Choose "
                   "one of its folders as the Sent folder.")
    else:
        verdict = (f"Logged in to {where}, but Mailroom found no Sent folder. Choose one of "
                   "its folders as the Sent folder.")
    return Probe(capabilities=caps, folders=folders, sent_folder=sent, verdict=verdict)


def append_once(client: IMAPClient, folder: str, raw: bytes, message_id: str) -> str:
    """Put ``raw`` in ``folder``, flagged \\Seen, unless a message with ``message_id`` is
    already there (an APPEND whose result was lost, a crash before it was recorded): at
    least once made exactly once. Returns "appended" or "found"."""
    client.select_folder(folder)
    if client.search(["HEADER", "Message-ID", message_id]):
        return "found"
    try:
        client.append(folder, raw, flags=[b"\\Seen"])
    except IMAPClientError as exc:  # a NO or BAD to the APPEND itself
        words = _words(exc)
        if "OVERQUOTA" in words.upper():
            raise ImapError(f"The mailbox is full (over its quota), so the copy could not be "
                            f"saved in “{folder}”. Delete some mail; Mailroom tries again "
                            "later.", server=words) from None
        raise ImapError(f"The IMAP server refused to save the copy in “{folder}”. Mailroom "
                        "tries again later.", server=words) from None
    return "appended"
