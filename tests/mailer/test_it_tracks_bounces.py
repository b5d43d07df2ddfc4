"""Bounce tracking against a real IMAP server (Dovecot, tests/imap_server.py) and a real
SMTP server: reports put in the mailbox (APPEND, as a delivery would) are read from INBOX
and Junk, matched to the account's own messages only, and recorded once per recipient;
what is not Mailroom's is left alone; a second poll with nothing new costs one STATUS per
folder; a huge report, a dropped connection and renumbered UIDs lose and duplicate
nothing."""

from __future__ import annotations

import imaplib
import socket
import threading

import pytest

from mailer import delivery
from mailer.imap import bounces
from mailer.models import DeliveryReport, ImapSettings, OutboxMessage
from tests.mailer.base import make_account, make_user, send
from tests.mailer.reports import postfix_report
from tests.mailer.servers import ScriptedSink
from tests.proxies import pipe

pytestmark = pytest.mark.pipeline  # on SQLite, and again on PostgreSQL + Redis

GONE = ("gone@bounce.test", "failed", "5.1.1",
        "550 5.1.1 <gone@bounce.test>: Recipient address rejected: User unknown")


@pytest.fixture
def sink():
    with ScriptedSink() as server:
        yield server


def _account(owner, sink, dovecot, user="owen", **imap):
    account = make_account(owner, sink, label=f"{user} reports",
                           from_address=f"{user}@example.test", ca_certificate=dovecot.ca_pem)
    settings_ = ImapSettings(account=account, host=dovecot.host, port=dovecot.tls_port,
                             username=user, save_to_sent=False, **imap)
    settings_.set_secret(dovecot.users[user])
    settings_.save()
    return account


def _sent(owner, account, to="ann@example.org, gone@bounce.test") -> OutboxMessage:
    msg = send(owner, account, to=to)
    assert delivery.deliver(msg.pk) == "sent"
    msg.refresh_from_db()
    return msg


def _deliver_to_mailbox(dovecot, user, raw, folder="INBOX"):
    with dovecot.client(user) as c:
        c.append(folder, raw)


def _states(msg):
    return {r.address: (r.status, r.remote) for r in msg.recipients.all()}


def test_a_report_marks_exactly_that_recipient_bounced(owner, sink, dovecot):
    account = _account(owner, sink, dovecot)
    bounces.poll(account)  # the folders are read from now on
    msg = _sent(owner, account)
    raw = postfix_report(message_id=msg.message_id, envid=msg.envid, recipients=[GONE])
    _deliver_to_mailbox(dovecot, "owen", raw)
    polled = bounces.poll(account)
    assert (polled.reports, polled.matched, polled.ignored) == (1, 1, 0)
    msg.refresh_from_db()
    assert msg.status == "bounced"
    assert _states(msg) == {"ann@example.org": ("accepted", ""),
                            "gone@bounce.test": ("accepted", "bounced")}
    gone = msg.recipients.get(address="gone@bounce.test")
    assert (gone.remote_status, gone.remote_code, gone.remote_mta) == ("5.1.1", 550,
                                                                       "mx.bounce.test")
    assert gone.remote_text == "<gone@bounce.test>: Recipient address rejected: User unknown"
    assert "the address does not exist there" in gone.remote_reason
    report = DeliveryReport.objects.get()
    assert gone.report == report and report.message == msg and report.kind == "standard"
    with report.raw.open("rb") as fh:
        assert fh.read() == raw
    assert b"\\Seen" in dovecot.flags("owen", "INBOX")[-1]
    assert bounces.poll(account).matched == 0  # recorded once


def test_without_an_envelope_id_the_returned_message_id_matches(owner, sink, dovecot):
    account = _account(owner, sink, dovecot, user="carol")
    bounces.poll(account)
    msg = _sent(owner, account)
    _deliver_to_mailbox(dovecot, "carol",
                        postfix_report(message_id=msg.message_id, recipients=[GONE]), "Junk")
    assert bounces.poll(account).matched == 1
    assert OutboxMessage.objects.get(pk=msg.pk).status == "bounced"


def test_a_report_about_other_mail_is_left_alone(owner, sink, dovecot):
    account = _account(owner, sink, dovecot)
    bounces.poll(account)
    _sent(owner, account)
    _deliver_to_mailbox(dovecot, "owen", postfix_report(
        message_id="<not-ours@elsewhere.test>", envid="0" * 32, recipients=[GONE]))
    polled = bounces.poll(account)
    assert (polled.reports, polled.matched, polled.ignored) == (1, 0, 1)
    assert not DeliveryReport.objects.exists()
    assert b"\\Seen" not in dovecot.flags("owen", "INBOX")[-1]  # not touched


def test_a_forged_envelope_id_never_touches_another_users_mail(owner, sink, dovecot):
    other = make_user("mallory-victim")
    victim_account = _account(other, sink, dovecot, user="carol")
    victim = _sent(other, victim_account)
    attacker = _account(owner, sink, dovecot)
    bounces.poll(attacker), bounces.poll(victim_account)
    # A report in the attacker's own mailbox naming the victim's envelope id and Message-ID.
    _deliver_to_mailbox(dovecot, "owen", postfix_report(
        message_id=victim.message_id, envid=victim.envid, recipients=[GONE]))
    assert bounces.poll(attacker).matched == 0
    victim.refresh_from_db()
    assert victim.status == "sent" and not DeliveryReport.objects.exists()
    assert all(remote == "" for _s, remote in _states(victim).values())


def test_a_delay_warns_and_a_later_delay_never_undoes_a_bounce(owner, sink, dovecot):
    account = _account(owner, sink, dovecot)
    bounces.poll(account)
    msg = _sent(owner, account)
    delayed = ("gone@bounce.test", "delayed", "4.4.1", "connect to mx.bounce.test: timed out")
    _deliver_to_mailbox(dovecot, "owen", postfix_report(
        message_id=msg.message_id, envid=msg.envid, recipients=[delayed]))
    bounces.poll(account)
    msg.refresh_from_db()
    assert msg.status == "sent"  # a warning: still on its way
    gone = msg.recipients.get(address="gone@bounce.test")
    assert gone.remote == "delayed" and "a warning, not a failure" in gone.remote_reason
    _deliver_to_mailbox(dovecot, "owen", postfix_report(
        message_id=msg.message_id, envid=msg.envid, recipients=[GONE]))
    _deliver_to_mailbox(dovecot, "owen", postfix_report(
        message_id=msg.message_id, envid=msg.envid, recipients=[delayed],
        sender="late@example.test"))
    bounces.poll(account)
    msg.refresh_from_db()
    assert msg.status == "bounced"
    assert msg.recipients.get(address="gone@bounce.test").remote == "bounced"


def test_a_second_poll_with_nothing_new_is_one_status_per_folder(
    owner, sink, dovecot, monkeypatch
):
    account = _account(owner, sink, dovecot)
    bounces.poll(account)
    sent = []
    real = imaplib.IMAP4._command

    def counting(self, name, *args):
        sent.append(name)
        return real(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_command", counting)
    polled = bounces.poll(account)
    assert polled.new == {"INBOX": 0, "Junk": 0}
    work = [c for c in sent if c not in ("CAPABILITY", "LOGIN", "LOGOUT")]
    assert work == ["STATUS", "STATUS"], sent


def test_a_huge_report_is_skipped_with_its_reason(owner, sink, dovecot, settings):
    settings.MAILROOM_REPORT_MAX_BYTES = 20_000
    account = _account(owner, sink, dovecot)
    bounces.poll(account)
    msg = _sent(owner, account)
    raw = postfix_report(message_id=msg.message_id, envid=msg.envid, recipients=[GONE])
    _deliver_to_mailbox(dovecot, "owen", _padded(raw, 30_000))
    polled = bounces.poll(account)
    assert polled.matched == 0 and "larger than 0 MB" not in " ".join(polled.skipped)
    detail = ImapSettings.objects.get(account=account).poll_detail
    assert "looks like a delivery report was not read: it is larger than" in detail
    assert OutboxMessage.objects.get(pk=msg.pk).status == "sent"


def test_renumbered_uids_find_the_same_report_once(owner, sink, dovecot):
    account = _account(owner, sink, dovecot, user="carol")
    bounces.poll(account)
    msg = _sent(owner, account)
    raw = postfix_report(message_id=msg.message_id, envid=msg.envid, recipients=[GONE])
    _deliver_to_mailbox(dovecot, "carol", raw, "Junk")
    assert bounces.poll(account).matched == 1
    # The server renumbers the folder (a new UIDVALIDITY: here the folder is recreated,
    # with the same report in it).
    with dovecot.client("carol") as c:
        c.rename_folder("Junk", "Junk-old")
        c.create_folder("Junk")
        c.append("Junk", raw)
    polled = bounces.poll(account)
    assert polled.new["Junk"] == 1 and polled.matched == 0
    assert DeliveryReport.objects.count() == 1


def test_a_connection_dropped_mid_fetch_loses_and_duplicates_nothing(owner, sink, dovecot):
    account = _account(owner, sink, dovecot)
    bounces.poll(account)
    first, second = _sent(owner, account), _sent(owner, account)
    for msg in (first, second):
        _deliver_to_mailbox(dovecot, "owen", _padded(postfix_report(
            message_id=msg.message_id, envid=msg.envid, recipients=[GONE]), 60_000))
    # TLS end to end: the proxy cannot read the FETCH, so it counts bytes. The greeting,
    # login and header fetch are a few KB; the two reports' bodies are 120 KB.
    with _CuttingProxy(dovecot.host, dovecot.tls_port, after_bytes=70_000) as proxy:
        ImapSettings.objects.filter(account=account).update(port=proxy.port)
        polled = bounces.poll(account)
    assert polled.problem and "dropped the connection" in polled.problem
    assert "dropped the connection" in ImapSettings.objects.get(account=account).poll_detail
    ImapSettings.objects.filter(account=account).update(port=dovecot.tls_port)
    bounces.poll(account)
    assert DeliveryReport.objects.count() == 2
    for msg in (first, second):
        assert OutboxMessage.objects.get(pk=msg.pk).status == "bounced"
    assert ImapSettings.objects.get(account=account).poll_detail == ""


def test_matched_reports_are_moved_when_asked(owner, sink, dovecot):
    account = _account(owner, sink, dovecot, reports_folder="Reports")
    bounces.poll(account)
    msg = _sent(owner, account)
    _deliver_to_mailbox(dovecot, "owen", postfix_report(
        message_id=msg.message_id, envid=msg.envid, recipients=[GONE]))
    inbox_before = len(dovecot.messages("owen", "INBOX"))
    assert bounces.poll(account).matched == 1
    assert len(dovecot.messages("owen", "INBOX")) == inbox_before - 1
    [moved] = dovecot.messages("owen", "Reports")
    assert msg.envid.encode() in moved
    assert DeliveryReport.objects.get().folder == "INBOX"


def test_a_qmail_bounce_is_recognised_by_flufl_bounce(owner, sink, dovecot):
    account = _account(owner, sink, dovecot, user="carol")
    bounces.poll(account)
    msg = _sent(owner, account)
    qmail = (
        "From: MAILER-DAEMON@mail.bounce.test\r\nTo: carol@example.test\r\n"
        "Subject: failure notice\r\nDate: Sun, 6 Dec 2026 12:00:00 +0000\r\n\r\n"
        "Hi. This is the qmail-send program at mail.bounce.test.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        "<gone@bounce.test>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
        f"Return-Path: <carol@example.test>\r\nMessage-ID: {msg.message_id}\r\n"
        "Subject: Hello\r\n\r\nHello.\r\n"
    ).encode()
    _deliver_to_mailbox(dovecot, "carol", qmail)
    assert bounces.poll(account).matched == 1
    msg.refresh_from_db()
    assert msg.status == "bounced"
    gone = msg.recipients.get(address="gone@bounce.test")
    assert gone.remote == "bounced" and gone.report.kind == "other"
    assert msg.recipients.get(address="ann@example.org").remote == ""


def _padded(raw: bytes, size: int) -> bytes:
    """The report with its human-readable part grown to about ``size`` bytes."""
    line = b"Your message could not be delivered."
    return raw.replace(line, line + b"\r\n" + b"(padding line)\r\n" * (size // 16))


class _CuttingProxy:
    """Loopback TCP proxy to the IMAP server that cuts both sides once the server has sent
    ``after_bytes`` (in the middle of a FETCH of whole messages)."""

    def __init__(self, host: str, port: int, *, after_bytes: int) -> None:
        self.target, self.after_bytes = (host, port), after_bytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(self.target)
        threading.Thread(target=pipe, args=(client, server), daemon=True).start()
        pipe(server, client, cut_after=self.after_bytes)
        client.close()
        server.close()

    def __enter__(self) -> _CuttingProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.listener.close()


def test_beats_pass_polls_each_due_account_once(owner, sink, dovecot, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.MAILROOM_REPORT_POLL_SECONDS = 300
    account = _account(owner, sink, dovecot)
    off = _account(owner, sink, dovecot, user="carol", track_reports=False)
    assert bounces.poll_due() == 1  # never polled: due; the switched-off one is not
    assert bounces.poll_due() == 0  # polled a moment ago: not due for 5 minutes
    imap = ImapSettings.objects.get(account=account)
    assert imap.polled_at and imap.poll_claimed_until is None and imap.cursors
    assert ImapSettings.objects.get(account=off).polled_at is None
    # Another worker holds the lease: this one leaves the account alone.
    ImapSettings.objects.filter(pk=imap.pk).update(
        polled_at=timezone.now() - timedelta(hours=1),
        poll_claimed_until=timezone.now() + timedelta(minutes=1))
    assert bounces.poll_due() == 0
    ImapSettings.objects.filter(pk=imap.pk).update(poll_claimed_until=None)
    assert bounces.poll_due() == 1
