"""mailer.imap.reports.parse on reports that real MTAs write a little off the standard:
the same recipient repeated in the status part (seen in Mailman's sample corpus), and
"Action: failure" instead of RFC 3464's "failed"."""

from __future__ import annotations

from mailer.imap.reports import parse
from tests.mailer.reports import postfix_report

GONE = ("gone@bounce.test", "failed", "5.1.1", "550 5.1.1 <gone@bounce.test>: User unknown")


def test_a_recipient_repeated_in_the_report_is_read_once():
    raw = postfix_report(message_id="<m1@example.test>", envid="e1", recipients=[GONE, GONE])
    report = parse(raw)
    assert [(r.address, r.state, r.status) for r in report.recipients] == [
        ("gone@bounce.test", "bounced", "5.1.1")]


def test_action_failure_is_read_as_a_bounce():
    raw = postfix_report(message_id="<m1@example.test>", recipients=[GONE])
    [gone] = parse(raw.replace(b"Action: failed", b"Action: failure")).recipients
    assert (gone.address, gone.state, gone.code) == ("gone@bounce.test", "bounced", 550)
