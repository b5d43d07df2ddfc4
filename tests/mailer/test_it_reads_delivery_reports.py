"""mailer.imap.reports.parse: what a report says, read with the email package (RFC 3464)
or flufl.bounce (other bounces); bad input gives what can be read, never an exception."""

from __future__ import annotations

import base64

from mailer.imap.reports import parse
from tests.mailer.reports import postfix_report

GONE = ("gone@bounce.test", "failed", "5.1.1", "550 5.1.1 <gone@bounce.test>: User unknown")


def test_it_reads_a_standard_report():
    raw = postfix_report(message_id="<m1@example.test>", envid="abc+2B1",
                         recipients=[GONE, ("ok@bounce.test", "delivered", "2.0.0",
                                            "250 2.0.0 Ok: queued")])
    report = parse(raw)
    assert report.kind == "standard" and report.envid == "abc+1"  # xtext decoded
    assert report.message_ids == ["<m1@example.test>"]
    assert report.reporting_mta == "mta.test"
    assert report.subject == "Undelivered Mail Returned to Sender"
    assert report.arrived_at.year == 2026
    gone, ok = report.recipients
    assert (gone.address, gone.state, gone.status, gone.code) == ("gone@bounce.test",
                                                                  "bounced", "5.1.1", 550)
    assert gone.text == "<gone@bounce.test>: User unknown" and gone.remote_mta == "mx.bounce.test"
    assert (ok.state, ok.code) == ("delivered", 250)


def test_html_in_a_diagnostic_becomes_text():
    raw = postfix_report(message_id="<m1@example.test>", recipients=[GONE],
                         diagnostic_html=True)
    [gone] = parse(raw).recipients
    assert gone.text == "<gone@bounce.test>: User unknown"


def test_an_encoded_status_part_is_read_too():
    raw = postfix_report(message_id="<m1@example.test>", envid="e1", recipients=[GONE])
    head, _, rest = raw.partition(b"Content-Type: message/delivery-status\r\n\r\n")
    status, _, tail = rest.partition(b"\r\n--B0")
    encoded = (head + b"Content-Type: message/delivery-status\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(status) + b"\r\n--B0" + tail)
    report = parse(encoded)
    assert report.envid == "e1" and report.recipients[0].status == "5.1.1"


def test_bad_input_gives_what_can_be_read_and_never_raises():
    assert parse(b"") is None
    assert parse(b"\xff\xfe\x00garbage") is None
    assert parse(b"From: ann@example.org\r\nSubject: lunch?\r\n\r\nNoon?\r\n") is None
    # a multipart/report whose parts are cut off
    cut = postfix_report(message_id="<m1@example.test>", recipients=[GONE])[:700]
    assert parse(cut) is None or parse(cut).recipients == []
    # a status block without Action or recipient is skipped, the others kept
    raw = postfix_report(message_id="<m1@example.test>", recipients=[GONE])
    broken = raw.replace(b"Action: failed", b"Action: ", 1)
    assert parse(broken).recipients == []
    # non-UTF-8 bytes in headers
    latin = raw.replace(b"Subject: Undelivered Mail Returned to Sender",
                        b"Subject: Unzustellbar: \xfcber")
    assert "Unzustellbar" in parse(latin).subject
    assert parse(latin).recipients[0].address == "gone@bounce.test"
