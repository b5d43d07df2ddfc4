"""``manage.py outbox``: the listing with per-recipient results and reasons, and the
retry / resend / cancel actions (through mailer.services), on real deliveries."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from mailer import delivery
from mailer.models import OutboxMessage
from tests.mailer.base import make_account, send, statuses

Status = OutboxMessage.Status


def outbox(*args) -> str:
    out = StringIO()
    call_command("outbox", *args, stdout=out)
    return out.getvalue()


def listing(*args) -> dict[int, dict]:
    return {row["id"]: row for row in json.loads(outbox("--json", *args))}


def test_it_lists_sent_mail_with_each_recipients_result(owner, account, server):
    server.script.rcpt["bad@example.com"] = ["550 5.1.1 No such user"]
    message = send(owner, account, to="good@example.com, bad@example.com", subject="Report")
    assert delivery.deliver(message.pk) == "partial"

    row = listing()[message.pk]
    assert (
        row["status"] == "sent" and row["subject"] == "Report" and row["account"] == account.label
    )
    good, bad = row["recipients"]
    assert (good["address"], good["status"], good["reason"]) == ("good@example.com", "accepted", "")
    assert (bad["status"], bad["code"], bad["enhanced"]) == ("failed", 550, "5.1.1")
    assert "mailbox does not exist" in bad["reason"]

    text = outbox()
    assert f"#{message.pk}  SENT" in text and "“Report”" in text
    assert "bad@example.com" in text and "mailbox does not exist" in text


def test_it_shows_unknown_paused_and_quota_deferred_with_their_reasons(owner, account, server):
    server.script.close_after_data = 1
    unknown = send(owner, account, subject="Cut")
    assert delivery.deliver(unknown.pk) == "unknown"

    limited = make_account(owner, server, label="Limited", quota_per_minute=1)
    first, second = send(owner, limited), send(owner, limited)
    delivery.deliver(first.pk)
    delivery.deliver(second.pk)

    paused = make_account(
        owner,
        server,
        label="Paused",
        paused_at=timezone.now(),
        paused_reason="The server refused the password (535).",
    )
    waiting = send(owner, paused)
    OutboxMessage.objects.filter(pk=waiting.pk).update(status=Status.DEFERRED)

    rows = listing()
    assert rows[unknown.pk]["status"] == "unknown"
    assert f"manage.py outbox resend {unknown.pk}" in rows[unknown.pk]["reason"]
    assert rows[second.pk]["status"] == "deferred" and rows[second.pk]["waiting"] == "quota"
    assert "quota" in rows[second.pk]["reason"]
    assert rows[waiting.pk]["waiting"] == "paused"
    assert "refused the password (535)" in rows[waiting.pk]["reason"]
    assert 'smtpaccount resume "Paused"' in rows[waiting.pk]["reason"]

    assert set(listing("--status", "unknown")) == {unknown.pk}
    text = outbox("--status", "deferred")
    assert "why:" in text and "next attempt:" in text and f"#{unknown.pk} " not in text


def test_retry_failed_only_requeues_just_the_refused_recipients(owner, account, server):
    server.script.rcpt["bad@example.com"] = ["550 5.1.1 No such user"]
    message = send(owner, account, to="good@example.com, bad@example.com")
    delivery.deliver(message.pk)

    assert f"#{message.pk} is now queued" in outbox("retry", str(message.pk), "--failed-only")
    message.refresh_from_db()
    assert message.status == Status.QUEUED
    assert statuses(message) == {"good@example.com": "accepted", "bad@example.com": "pending"}
    assert delivery.deliver(message.pk) == "sent"
    assert [r.rcpt_tos for r in server.received] == [["good@example.com"], ["bad@example.com"]]


def test_resend_sends_an_unknown_message_again_and_refuses_others(owner, account, server):
    server.script.close_after_data = 1
    message = send(owner, account)
    delivery.deliver(message.pk)
    assert "Queued to be sent again" in outbox("resend", str(message.pk))
    assert delivery.deliver(message.pk) == "sent"
    with pytest.raises(CommandError, match="Only a message whose outcome is unknown"):
        outbox("resend", str(message.pk))


def test_cancel_stops_a_waiting_message_but_not_a_sent_one(owner, account, server):
    message = send(owner, account, hold_seconds=60)
    assert f"Cancelled: #{message.pk} is now cancelled" in outbox("cancel", str(message.pk))
    message.refresh_from_db()
    assert message.status == Status.CANCELLED
    assert delivery.deliver(message.pk) is None and server.received == []  # nothing to claim
    sent = send(owner, account)
    assert delivery.deliver(sent.pk) == "sent"
    with pytest.raises(CommandError, match="cannot be cancelled because it is sent"):
        outbox("cancel", str(sent.pk))


def test_it_explains_an_unknown_id_and_an_empty_outbox(db):
    assert "The outbox is empty." in outbox()
    with pytest.raises(CommandError, match="no message 999"):
        outbox("retry", "999")


def test_it_shows_what_a_delivery_report_said(owner, account, server):
    from mailer.imap import bounces
    from tests.mailer.reports import postfix_report

    msg = send(owner, account, to="ann@example.org, gone@bounce.test")
    delivery.deliver(msg.pk)
    msg.refresh_from_db()
    raw = postfix_report(message_id=msg.message_id, envid=msg.envid, recipients=[
        ("gone@bounce.test", "failed", "5.1.1", "550 5.1.1 <gone@bounce.test>: User unknown")])
    report = bounces.record(account, raw, folder="INBOX", uidvalidity=1, uid=9)
    row = listing()[msg.pk]
    assert row["status"] == "bounced"
    gone = next(r for r in row["recipients"] if r["address"] == "gone@bounce.test")
    assert gone["status"] == "accepted"  # what the account's own server said
    assert gone["remote"] == {
        "state": "bounced", "mta": "mx.bounce.test", "status": "5.1.1", "code": 550,
        "text": "<gone@bounce.test>: User unknown", "reason": gone["remote"]["reason"],
        "at": gone["remote"]["at"], "report": report.pk}
    assert "does not exist there" in gone["remote"]["reason"]
    [rep] = row["reports"]
    assert rep["id"] == report.pk and open(rep["file"], "rb").read() == raw
    ann = next(r for r in row["recipients"] if r["address"] == "ann@example.org")
    assert ann["remote"] is None
    text = outbox()
    assert "later: bounced at mx.bounce.test: 550 5.1.1" in text and f"report #{report.pk}" in text
