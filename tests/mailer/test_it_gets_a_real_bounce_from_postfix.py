"""End to end with a real MTA: Mailroom sends through Postfix (its own instance,
tests/postfix_server.py) to one good and one bouncing address; the next hop (aiosmtpd)
refuses the second with 550 5.1.1; Postfix writes the delivery report itself and delivers
it to the sender's Maildir, which the test's Dovecot serves; Mailroom's poll finds it and
marks exactly that recipient bounced, with the remote server's words."""

from __future__ import annotations

import grp
import pwd
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from mailer import delivery
from mailer.imap import bounces, reports
from mailer.models import DeliveryReport, ImapSettings, OutboxMessage
from tests.mailer.base import make_account, send
from tests.mailer.servers import Script, ScriptedSink
from tests.postfix_server import start_postfix

pytestmark = pytest.mark.pipeline  # on SQLite, and again on PostgreSQL + Redis

REFUSAL = "550 5.1.1 <gone@bounce.test>: Recipient address rejected: User unknown"


@pytest.fixture
def next_hop():
    with ScriptedSink(Script(rcpt={"gone@bounce.test": [REFUSAL] * 10})) as server:
        yield server


@pytest.fixture
def postfix(dovecot, next_hop):
    directory = Path(tempfile.mkdtemp(prefix="mailroom-postfix-"))
    directory.chmod(0o755)
    owner = (pwd.getpwnam("dovecot").pw_uid, grp.getgrnam("dovecot").gr_gid)
    server = start_postfix(directory, next_hop_port=next_hop.port,
                           mailbox_base=dovecot.directory / "home",
                           mailboxes={"owen@example.test": "owen/Maildir/"},
                           uid=owner[0], gid=owner[1])
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def _wait_for_report(dovecot, before: int) -> bytes:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        inbox = dovecot.messages("owen", "INBOX")
        if len(inbox) > before:
            return inbox[-1]
        time.sleep(0.3)
    raise AssertionError("no bounce reached the mailbox within 60 s")


def test_postfix_bounces_one_recipient_and_mailroom_marks_exactly_it(
    owner, dovecot, postfix, next_hop
):
    account = make_account(owner, None, label="via Postfix", host=postfix.host,
                           port=postfix.port, security="none", auth_mechanism="none",
                           username="", from_address="owen@example.test")
    imap = ImapSettings(account=account, host=dovecot.host, port=dovecot.tls_port,
                        username="owen", save_to_sent=False)
    imap.set_secret(dovecot.users["owen"])
    imap.save()
    type(account).objects.filter(pk=account.pk).update(ca_certificate=dovecot.ca_pem)
    account.refresh_from_db()
    bounces.poll(account)  # reading starts now
    before = len(dovecot.messages("owen", "INBOX"))

    msg = send(owner, account, to="good@bounce.test, gone@bounce.test")
    assert delivery.deliver(msg.pk) == "sent"  # Postfix took both
    msg.refresh_from_db()
    raw = _wait_for_report(dovecot, before)

    # Postfix's own report: RFC 3464, with what Mailroom asked for on the wire.
    report = reports.parse(raw)
    assert report.kind == "standard" and report.envid == msg.envid
    assert report.message_ids == [msg.message_id]  # RET=HDRS: the headers came back
    [gone] = report.recipients
    assert (gone.address, gone.state, gone.status, gone.code) == ("gone@bounce.test",
                                                                  "bounced", "5.1.1", 550)

    polled = bounces.poll(account)
    assert polled.matched == 1
    msg.refresh_from_db()
    assert msg.status == "bounced"
    got = {r.address: r for r in msg.recipients.all()}
    assert (got["good@bounce.test"].status, got["good@bounce.test"].remote) == ("accepted", "")
    bounced = got["gone@bounce.test"]
    assert (bounced.status, bounced.remote, bounced.remote_status) == ("accepted", "bounced",
                                                                       "5.1.1")
    assert "Recipient address rejected: User unknown" in bounced.remote_text
    assert bounced.remote_mta == "127.0.0.1"  # Postfix names the next hop it tried
    assert DeliveryReport.objects.get().message == msg
    assert [r.rcpt_tos for r in next_hop.received] == [["good@bounce.test"]]
    assert OutboxMessage.objects.get(pk=msg.pk).delivery_reports.count() == 1
