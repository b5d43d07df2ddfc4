"""A real MTA for the tests: Postfix, as its own instance in a temporary directory (its own
main.cf and master.cf, queue and data directories; the system's Postfix is neither started
nor read beyond its programs), so that delivery reports are the ones a real MTA writes.

The instance (``mta.test``) listens for SMTP on 127.0.0.1 and a free port, relays for
127.0.0.0/8 only, and has two kinds of destination:

* ``bounce.test`` (relayed): sent on to ``[127.0.0.1]:PORT`` of an aiosmtpd next hop in the
  test process (``Postfix.next_hop``, a :class:`tests.smtp_servers.RunningServer` offering
  DSN), which answers ``550 5.1.1 <gone@bounce.test>: Recipient address rejected: User
  unknown`` for ``gone@bounce.test`` and 250 for everyone else. Postfix then writes a real
  RFC 3464 bounce (multipart/report, Original-Envelope-Id and Original-Recipient when the
  message came with ENVID and ORCPT, only the headers back under RET=HDRS) to the sender.
* ``example.test`` (the senders' domain): delivered over LMTP into the test's Dovecot
  (``tests/imap_server.py``): mail for ``owen@example.test`` lands in the INBOX of the IMAP
  user ``owen``.

Fixtures (module scope): ``postfix`` (a :class:`Postfix`; it uses the module's ``dovecot``)
and ``next_hop``. ``Postfix.client_kwargs()`` fits ``mailer.smtp.client.SMTPClient``; a
Mailroom account reaches it as host ``postfix.host``, port ``postfix.port``, no TLS, no
login. ``MAILROOM_KEEP_POSTFIX=1`` keeps its directory (``postfix.log``) after the tests.

No DNS is ever asked (next hops are IP literals), queue runs and retries are seconds apart
and mail gives up within a minute. Postfix must run as root (its master does); its daemons
run as the ``postfix`` user. Without Postfix, root or Dovecot's LMTP server (Debian package
dovecot-lmtpd) the tests that need it skip, saying which; under REQUIRE_SERVICES=1 (CI)
they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.imap_server import DOVECOT_LMTP, Dovecot, lmtp_available
from tests.ports import free_port
from tests.smtp_servers import RunningServer, start_smtp_server

POSTFIX = "/usr/sbin/postfix"
HOST = "127.0.0.1"
HOSTNAME = "mta.test"
LOCAL_DOMAIN = "example.test"  # the senders' mailboxes, in Dovecot
RELAY_DOMAIN = "bounce.test"  # relayed to the next hop, which refuses GONE
GONE = f"gone@{RELAY_DOMAIN}"
GONE_REPLY = f"550 5.1.1 <{GONE}>: Recipient address rejected: User unknown"

_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
myhostname = {hostname}
mydomain = {hostname}
myorigin = $myhostname
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_banner = $myhostname ESMTP
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
# No local mailboxes: the senders' domain is delivered into Dovecot over LMTP.
mydestination =
local_transport = error:5.1.1 this test MTA has no local mailboxes
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {local_domain}
virtual_mailbox_maps =
virtual_transport = lmtp:inet:{host}:{lmtp_port}
relay_domains = {relay_domain}
relay_recipient_maps =
transport_maps = inline:{{ {relay_domain}=smtp:[{host}]:{next_hop_port} }}
# Never DNS: every next hop is an IP literal.
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtp_connect_timeout = 5s
lmtp_connect_timeout = 5s
# Seconds, not minutes: retry soon, give up within a minute.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 60s
bounce_queue_lifetime = 60s
delay_warning_time = 0h
notify_classes =
biff = no
append_dot_mydomain = no
"""

# No pickup/postdrop (nothing is submitted with sendmail), no TLS, no chroot. A second
# smtpd (``data_port``) offers no CHUNKING (every message goes with DATA) and disconnects a
# client that breaks RFC 2920's pipelining rules (smtpd_forbid_unauth_pipelining, the
# default from Postfix 3.9 on).
_MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
{host}:{data_port} inet n - n - - smtpd
  -o smtpd_discard_ehlo_keywords=chunking
  -o smtpd_forbid_unauth_pipelining=yes
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    directory: Path
    port: int
    next_hop: RunningServer
    dovecot: Dovecot
    data_port: int = 0  # no CHUNKING, strict about pipelining
    host: str = HOST
    hostname: str = HOSTNAME

    @property
    def config_directory(self) -> Path:
        return self.directory / "etc"

    def client_kwargs(self, **overrides) -> dict:
        """Arguments for ``mailer.smtp.client.SMTPClient(**...)``: plain SMTP, no AUTH."""
        return {"host": self.host, "port": self.port, "security": "none",
                "connect_timeout": 10.0, "command_timeout": 30.0, **overrides}

    def log(self) -> str:
        path = self.directory / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def queue(self) -> str:
        """What is still queued (``postqueue -p``), for a failing test's message."""
        done = subprocess.run(["/usr/sbin/postqueue", "-c", str(self.config_directory), "-p"],
                              capture_output=True, text=True, timeout=20)
        return done.stdout + done.stderr

    def running(self) -> bool:
        done = subprocess.run([POSTFIX, "-c", str(self.config_directory), "status"],
                              capture_output=True, timeout=20)
        return done.returncode == 0

    def stop(self) -> None:
        """``postfix stop``: it waits for the master to end (and kills it after 5 s)."""
        subprocess.run([POSTFIX, "-c", str(self.config_directory), "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if self.running():  # still ours (status checks the master's lock): its process group
            pid = int((self.directory / "spool" / "pid" / "master.pid").read_text().split()[0])
            os.killpg(pid, signal.SIGKILL)


def require_postfix() -> None:
    """Skip (fail under REQUIRE_SERVICES=1) unless this Postfix instance can be started."""
    require_service(os.access(POSTFIX, os.X_OK), f"Postfix at {POSTFIX} (Debian package postfix)")
    require_service(os.getuid() == 0, "root, to start a Postfix instance (its master runs as root)")
    require_service(lmtp_available(),
                    f"Dovecot's LMTP server at {DOVECOT_LMTP} (Debian package dovecot-lmtpd)")


def start_postfix(directory: Path, dovecot: Dovecot, next_hop: RunningServer) -> Postfix:
    """Configure and start an instance in ``directory`` (root-owned, 0755)."""
    assert dovecot.lmtp_port is not None, "Dovecot was started without its LMTP server"
    etc = directory / "etc"
    for sub, mode in (("etc", 0o755), ("spool", 0o755), ("data", 0o700)):
        (directory / sub).mkdir()
        (directory / sub).chmod(mode)  # whatever the umask: Postfix checks its directories
    shutil.chown(directory / "data", "postfix", "postfix")
    port = free_port()
    data_port = free_port()
    while data_port == port:
        data_port = free_port()
    server = Postfix(directory, port, next_hop, dovecot, data_port=data_port)
    (etc / "main.cf").write_text(_MAIN_CF.format(
        d=directory, host=HOST, hostname=HOSTNAME, local_domain=LOCAL_DOMAIN,
        relay_domain=RELAY_DOMAIN, lmtp_port=dovecot.lmtp_port, next_hop_port=next_hop.port,
    ))
    (etc / "master.cf").write_text(_MASTER_CF.format(host=HOST, port=server.port,
                                                     data_port=server.data_port))
    for name in ("main.cf", "master.cf"):
        (etc / name).chmod(0o644)
    # "postfix start" creates the queue's subdirectories with their owners (post-install
    # create-missing), checks the instance and waits for the master to be up. The master is
    # a daemon: its output goes to a file (a pipe would stay open in it).
    with open(directory / "start.log", "wb") as out:
        done = subprocess.run([POSTFIX, "-c", str(etc), "start"],
                              stdout=out, stderr=subprocess.STDOUT, timeout=60)
    if done.returncode != 0:
        raise RuntimeError("Postfix did not start: " + (directory / "start.log").read_text()
                           + server.log()[-2000:])
    _wait_for(server)
    return server


def _wait_for(server: Postfix) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((server.host, server.port), timeout=1) as sock:
                if sock.recv(512).startswith(b"220 "):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("Postfix does not answer: " + server.log()[-2000:])


# --- fixtures (a pytest plugin: tests/conftest.py) ------------------------------------------


@pytest.fixture(scope="module")
def next_hop():
    """The aiosmtpd server Postfix relays bounce.test to: it offers DSN (as a real MX, so
    Postfix passes ENVID, NOTIFY and ORCPT on), refuses gone@bounce.test with 550 5.1.1 and
    records every other message (``next_hop.messages``, shared by the module's tests)."""
    server = start_smtp_server()
    server.handler.dsn = True
    server.handler.reply_at("rcpt", GONE_REPLY, address=GONE)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postfix(request):
    """Postfix delivering example.test into the module's ``dovecot`` over LMTP
    (``postfix.dovecot``) and relaying bounce.test to ``next_hop`` (``postfix.next_hop``)."""
    require_postfix()  # before Dovecot is started for nothing
    dovecot = request.getfixturevalue("dovecot")
    hop = request.getfixturevalue("next_hop")
    # Not under pytest's temporary directory, which only root may enter: Postfix's daemons
    # run as the postfix user and must reach their queue.
    directory = Path(tempfile.mkdtemp(prefix="mailroom-postfix-"))
    directory.chmod(0o755)
    try:
        server = start_postfix(directory, dovecot, hop)
        yield server
        server.stop()
    finally:
        if os.environ.get("MAILROOM_KEEP_POSTFIX") != "1":  # its log, to read after a failure
            shutil.rmtree(directory, ignore_errors=True)
