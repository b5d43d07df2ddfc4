"""A real MTA for the tests: Postfix, its own instance in a temporary directory (its own
main.cf and master.cf, queue and data directories; the machine's Postfix and /etc/postfix
are never touched), listening on a free loopback port.

It is the account's SMTP server in the end-to-end bounce tests: mail for ``bounce.test``
is relayed to a next hop on loopback (an aiosmtpd the test runs, which refuses one address
with 550 5.1.1), and when that hop refuses, Postfix itself writes the delivery report
(RFC 3464, with the ENVID, ORCPT and RET=HDRS it was given) and delivers it to the
sender's Maildir — the very Maildir the test's Dovecot serves (``tests/imap_server.py``),
so Mailroom reads the bounce over IMAP as it would from a real mailbox. No DNS: the next
hop is an IP literal.

Used as ``start_postfix(directory, next_hop_port, mailbox_base, owner_uid, owner_gid)``
(``mailbox_base``: the Dovecot's home directory). Skips when Postfix is missing, fails
under REQUIRE_SERVICES=1 (``tests.conftest.require_service``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_service
from tests.ports import free_port

POSTFIX = "/usr/sbin/postfix"
HOST = "127.0.0.1"

_MAIN = """\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
myhostname = mta.test
mydomain = mta.test
myorigin = example.test
mydestination =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_banner = $myhostname ESMTP
relay_domains = bounce.test
transport_maps = inline:{{ bounce.test=smtp:[{host}]:{next_hop} }}
smtp_dns_support_level = disabled
smtp_host_lookup = native
virtual_mailbox_domains = example.test
virtual_mailbox_base = {mailboxes}
virtual_mailbox_maps = inline:{{ {maps} }}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
alias_maps =
alias_database =
local_recipient_maps =
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
bounce_queue_lifetime = 1m
maximal_queue_lifetime = 1m
delay_warning_time = 0h
smtp_connect_timeout = 5s
"""

_MASTER = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
virtual   unix  - n n -  - virtual
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    directory: Path
    port: int
    host: str = HOST

    def log(self) -> str:
        path = self.directory / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.directory / "etc"), "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def start_postfix(directory: Path, *, next_hop_port: int, mailbox_base: Path,
                  mailboxes: dict[str, str], uid: int, gid: int) -> Postfix:
    """``mailboxes``: address → Maildir under ``mailbox_base`` (e.g. "owen/Maildir/")."""
    require_service(os.access(POSTFIX, os.X_OK) and os.getuid() == 0,
                    f"Postfix at {POSTFIX}, run as root (it starts its own instance)")
    etc = directory / "etc"
    etc.mkdir(parents=True)
    (directory / "data").mkdir()
    (directory / "spool").mkdir()
    server = Postfix(directory, free_port())
    maps = " ".join(f"{a}={m}" for a, m in mailboxes.items())
    (etc / "main.cf").write_text(_MAIN.format(
        d=directory, host=HOST, next_hop=next_hop_port, mailboxes=mailbox_base, maps=maps,
        uid=uid, gid=gid))
    (etc / "master.cf").write_text(_MASTER.format(host=HOST, port=server.port))
    for command in (["set-permissions"], ["check"], ["start"]):
        done = subprocess.run([POSTFIX, "-c", str(etc), *command], capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command[0]} failed: {done.stdout}{done.stderr}"
                               f"{server.log()[-2000:]}")
    _wait_for(server)
    return server


def _wait_for(server: Postfix) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((server.host, server.port), timeout=1) as s:
                if s.recv(100).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("Postfix does not answer: " + server.log()[-2000:])
