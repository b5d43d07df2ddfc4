"""End to end with a real MTA (``tests/postfix_server.py``): mail goes to Postfix (its own
instance) for one good and one bouncing address; the next hop (aiosmtpd) refuses the second
with 550 5.1.1; Postfix writes the delivery report itself (RFC 3464) and delivers it over
LMTP into the sender's INBOX on the test's Dovecot. First with Mailroom's SMTP client alone
(the report as Postfix wrote it), then through Mailroom's whole path: queued, delivered by
the worker's code, and the bounce found by polling the account's IMAP side, which marks
exactly that recipient bounced with the remote server's words."""

from __future__ import annotations

import email
import email.policy
import secrets
import time
from email.message import EmailMessage

import pytest

from mailer import delivery
from mailer.imap import bounces, reports
from mailer.models import DeliveryReport, ImapSettings
from mailer.smtp.client import SMTPClient
from tests.mailer.base import make_account, send
from tests.postfix_server import GONE, GONE_REPLY

pytestmark = pytest.mark.pipeline  # on SQLite, and again on PostgreSQL + Redis

GOOD = "good@bounce.test"
DEADLINE = 60.0  # seconds for Postfix to bounce and Dovecot to store the report


def _inbox_after(dovecot, postfix, user: str, before: int) -> list[bytes]:
    """The user's INBOX once a new message is there and Postfix's queue is empty (so
    nothing else is on its way), or an AssertionError with Postfix's log."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        inbox = dovecot.messages(user, "INBOX")
        if len(inbox) > before and "Mail queue is empty" in postfix.queue():
            return dovecot.messages(user, "INBOX")[before:]
        time.sleep(0.3)
    raise AssertionError(f"no bounce in {user}'s INBOX within {DEADLINE:.0f} s; queue:\n"
                         f"{postfix.queue()}\nPostfix's log:\n{postfix.log()[-3000:]}")


def _message(sender: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"{GOOD}, {GONE}"
    msg["Subject"] = "Hello through a real MTA"
    msg["Message-ID"] = email.utils.make_msgid(domain="example.test")
    msg.set_content("A body that RET=HDRS keeps out of the bounce.\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def test_postfix_writes_an_rfc3464_report_with_our_envid(dovecot, postfix):
    sender, before = "carol@example.test", len(dovecot.messages("carol", "INBOX"))
    hop_before = len(postfix.next_hop.messages)
    envid = secrets.token_hex(8)
    with SMTPClient(**postfix.client_kwargs()) as client:
        client.connect()
        result = client.send(sender, [GOOD, GONE], _message(sender), envid=envid,
                             dsn_notify=["FAILURE", "DELAY"], dsn_ret="HDRS", dsn_orcpt=True)
    assert result.delivered and result.accepted == [GOOD, GONE]  # the next hop refuses later

    [raw] = _inbox_after(dovecot, postfix, "carol", before)  # exactly one report
    report = email.message_from_bytes(raw, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["From"].addresses[0].username == "MAILER-DAEMON"
    notice, status, returned = report.get_payload()
    assert notice.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    per_message, *per_recipient = status.get_payload()
    assert per_message["Original-Envelope-Id"] == envid
    assert per_message["Reporting-MTA"] == "dns; mta.test"
    [gone] = per_recipient  # the good one is not reported: NOTIFY had no SUCCESS
    assert gone["Final-Recipient"] == f"rfc822; {GONE}"
    assert gone["Original-Recipient"].replace(" ", "") == f"rfc822;{GONE}"
    assert (gone["Action"], gone["Status"]) == ("failed", "5.1.1")
    assert gone["Remote-MTA"] == "dns; 127.0.0.1"
    assert " ".join(gone["Diagnostic-Code"].split()) == f"smtp; {GONE_REPLY}"
    # RET=HDRS: the headers came back, the body did not.
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"Subject: Hello through a real MTA" in returned.get_payload(decode=True)
    assert b"RET=HDRS keeps out" not in raw

    [relayed] = postfix.next_hop.messages[hop_before:]
    assert relayed.rcpt_tos == [GOOD] and relayed.mail_from == sender
    passed_on = [p for p in postfix.next_hop.handler.dsn_params if p[0] == "MAIL"][-1]
    assert f"ENVID={envid}" in passed_on[2]  # Postfix carried our DSN request onward


def test_mailroom_marks_exactly_the_bounced_recipient(owner, dovecot, postfix):
    account = make_account(owner, None, label="owen via Postfix", host=postfix.host,
                           port=postfix.port, from_address="owen@example.test",
                           ca_certificate=dovecot.ca_pem)
    imap = ImapSettings(account=account, host=dovecot.host, port=dovecot.tls_port,
                        security="tls", username="owen", save_to_sent=False)
    imap.set_secret(dovecot.users["owen"])
    imap.save()
    assert bounces.poll(account).problem == ""  # reading starts now, from an empty INBOX
    before, hop_before = len(dovecot.messages("owen", "INBOX")), len(postfix.next_hop.messages)

    msg = send(owner, account, to=f"{GOOD}, {GONE}")
    assert delivery.deliver(msg.pk) == "sent"  # Postfix took both
    msg.refresh_from_db()
    [raw] = _inbox_after(dovecot, postfix, "owen", before)

    # Postfix's own report carries what Mailroom asked for on the wire.
    report = reports.parse(raw)
    assert report is not None
    assert (report.kind, report.envid) == ("standard", msg.envid)
    assert report.message_ids == [msg.message_id]  # RET=HDRS: the headers came back
    [gone] = report.recipients
    assert (gone.address, gone.state, gone.status, gone.code) == (GONE, "bounced", "5.1.1", 550)

    polled = bounces.poll(account)
    assert (polled.matched, polled.problem) == (1, "")
    msg.refresh_from_db()
    assert msg.status == "bounced"
    got = {r.address: r for r in msg.recipients.all()}
    assert (got[GOOD].status, got[GOOD].remote) == ("accepted", "")
    bounced = got[GONE]
    assert (bounced.status, bounced.remote, bounced.remote_status, bounced.remote_code) == (
        "accepted", "bounced", "5.1.1", 550)
    assert "Recipient address rejected: User unknown" in bounced.remote_text
    assert bounced.remote_mta == "127.0.0.1"  # Postfix names the next hop that refused
    assert DeliveryReport.objects.get().message == msg
    assert [m.rcpt_tos for m in postfix.next_hop.messages[hop_before:]] == [[GOOD]]
    assert bounces.poll(account).matched == 0  # read once
