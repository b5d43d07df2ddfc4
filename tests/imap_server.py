"""A real IMAP server for the tests: Dovecot, started on loopback ports with its own
configuration in a temporary directory (no system file is read or touched), with STARTTLS
on one port and implicit TLS on another (certificates from trustme), SPECIAL-USE folders
(Sent, Junk, Drafts, Trash) and users with generated passwords. A quota per user makes
[OVERQUOTA] reachable. Without Dovecot the tests that need it skip, saying so (they fail
under REQUIRE_SERVICES=1, as in CI).

Where Dovecot's LMTP server is installed (Debian package dovecot-lmtpd), it also listens
for LMTP on a loopback port (``Dovecot.lmtp_port``; None without it): mail for
``USER@any.domain`` lands in USER's INBOX, so a real MTA (``tests/postfix_server.py``) can
deliver into the mailboxes the tests read over IMAP."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.ports import free_port

DOVECOT = "/usr/sbin/dovecot"
DOVECOT_LMTP = "/usr/lib/dovecot/lmtp"  # Debian package dovecot-lmtpd
HOST = "127.0.0.1"

_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = {protocols}
listen = {host}
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 0
mail_location = maildir:~/Maildir
mail_plugins = $mail_plugins quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = count:User quota
  quota_rule = *:storage={quota}
  quota_vsizes = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {starttls_port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
}}
"""

# Appended when Dovecot's LMTP server is installed. LMTP looks users up by the recipient's
# local part (``owen@example.test`` is the IMAP user ``owen``); an unknown one is refused.
_LMTP_CONF = """\
protocol lmtp {{
  postmaster_address = postmaster@example.test
  auth_username_format = %Ln
}}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
}}
"""


def lmtp_available() -> bool:
    return os.access(DOVECOT_LMTP, os.X_OK)


@dataclass
class Dovecot:
    directory: Path
    starttls_port: int
    tls_port: int
    ca_pem: str
    users: dict[str, str] = field(repr=False)  # username → password
    process: subprocess.Popen | None = None
    host: str = HOST
    #: Dovecot's LMTP port on ``host``, or None when its LMTP server is not installed.
    lmtp_port: int | None = None

    def client(self, username: str, *, tls: bool = True):
        """An imapclient session logged in as ``username`` (for a test's own checks)."""
        from imapclient import IMAPClient

        ctx = ssl.create_default_context(cadata=self.ca_pem)
        if tls:
            c = IMAPClient(self.host, port=self.tls_port, ssl=True, ssl_context=ctx, timeout=10)
        else:
            c = IMAPClient(self.host, port=self.starttls_port, ssl=False, timeout=10)
            c.starttls(ctx)
        c.login(username, self.users[username])
        return c

    def messages(self, username: str, folder: str) -> list[bytes]:
        """Every message in ``folder``, as stored."""
        with self.client(username) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            return [v[b"BODY[]"] for _, v in sorted(c.fetch(uids, ["BODY.PEEK[]"]).items())]

    def flags(self, username: str, folder: str) -> list[tuple]:
        with self.client(username) as c:
            c.select_folder(folder, readonly=True)
            return [v for _, v in sorted(c.get_flags(c.search("ALL")).items())]

    def stop(self) -> None:
        subprocess.run([DOVECOT, "-c", str(self.directory / "dovecot.conf"), "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        pid_file = self.directory / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def start_dovecot(directory: Path, users: dict[str, str], *, quota: str = "10M") -> Dovecot:
    import grp
    import pwd

    import trustme

    require_service(os.access(DOVECOT, os.X_OK), f"Dovecot at {DOVECOT}")
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    for sub in ("run", "state", "home"):
        (directory / sub).mkdir()
    # Mail is stored as the user running the tests, or (as root) as Dovecot's own user.
    if os.getuid() == 0:
        uid, gid = pwd.getpwnam("dovecot").pw_uid, grp.getgrnam("dovecot").gr_gid
        shutil.chown(directory / "home", uid, gid)
    else:
        uid, gid = os.getuid(), os.getgid()
    (directory / "users").write_text(
        "".join(f"{u}:{{PLAIN}}{p}::::{directory}/home/{u}\n" for u, p in users.items())
    )
    (directory / "users").chmod(0o600)
    if os.getuid() == 0:  # read by Dovecot's auth process, which runs as its own user
        shutil.chown(directory / "users", uid, gid)
    server = Dovecot(directory, free_port(), free_port(), ca.cert_pem.bytes().decode(), users,
                     lmtp_port=free_port() if lmtp_available() else None)
    conf = _CONF.format(
        d=directory, host=HOST, uid=uid, gid=gid, quota=quota,
        starttls_port=server.starttls_port, tls_port=server.tls_port,
        protocols="imap lmtp" if server.lmtp_port else "imap",
    )
    if server.lmtp_port:
        conf += _LMTP_CONF.format(host=HOST, lmtp_port=server.lmtp_port)
    (directory / "dovecot.conf").write_text(conf)
    # Dovecot daemonizes: its output goes to a file (a pipe would stay open in the daemon).
    with open(directory / "start.log", "wb") as out:
        done = subprocess.run([DOVECOT, "-c", str(directory / "dovecot.conf")],
                              stdout=out, stderr=subprocess.STDOUT, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"Dovecot did not start: {(directory / 'start.log').read_text()}")
    _wait_for(server)
    return server


def _wait_for(server: Dovecot) -> None:
    import socket

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((server.host, server.tls_port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    log = (server.directory / "dovecot.log")
    raise RuntimeError("Dovecot does not answer: " + (log.read_text()[-2000:] if log.exists()
                                                      else "no log"))


# --- fixtures (a pytest plugin: tests/conftest.py) ------------------------------------------


@pytest.fixture(scope="module")
def dovecot():
    """Dovecot with two users, "owen" and "carol" (generated passwords), 10 MB each."""
    # Not under pytest's own temporary directory: that one is private to the user running
    # the tests, and Dovecot's processes run as its own users (when the tests run as root).
    directory = Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
    directory.chmod(0o755)
    try:
        server = start_dovecot(
            directory, {"owen": secrets.token_urlsafe(12), "carol": secrets.token_urlsafe(12)})
        yield server
        server.stop()
    finally:
        if os.environ.get("MAILROOM_KEEP_DOVECOT") != "1":  # its log, to read after a failure
            shutil.rmtree(directory, ignore_errors=True)
