"""Delivery reports for tests, in the shape real MTAs write them.

``postfix_report`` builds a standard report (RFC 3464) as Postfix's bounce daemon writes
one: the human-readable part, ``message/delivery-status`` (Reporting-MTA, X-Postfix-Queue-ID,
Original-Envelope-Id, Arrival-Date; per recipient Final-Recipient, Original-Recipient,
Action, Status, Remote-MTA, Diagnostic-Code) and the returned headers
(``text/rfc822-headers``, as with RET=HDRS). ``tests/mailer/test_it_gets_a_real_bounce...``
gets one from a real Postfix; these are for the cases a real MTA will not produce on
demand (a forged envelope id, broken encodings, a huge report).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid


def postfix_report(*, message_id: str, recipients: list[tuple[str, str, str, str]],
                   envid: str = "", sender: str = "owen@example.test",
                   diagnostic_html: bool = False) -> bytes:
    """``recipients``: (address, action, status, diagnostic) per recipient."""
    head = "\n".join([
        "From: MAILER-DAEMON@mta.test (Mail Delivery System)",
        f"To: {sender}",
        "Subject: Undelivered Mail Returned to Sender",
        "Date: " + format_datetime(datetime(2026, 12, 6, 12, 0, tzinfo=UTC)),
        "Message-ID: " + make_msgid(domain="mta.test"),
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B0"',
    ])
    fields = ["Reporting-MTA: dns; mta.test", "X-Postfix-Queue-ID: 4FQ1x2"]
    if envid:
        fields.append(f"Original-Envelope-Id: {envid}")
    fields.append("Arrival-Date: Sun,  6 Dec 2026 11:59:58 +0000 (UTC)")
    blocks = ["\n".join(fields)]
    for address, action, status, diagnostic in recipients:
        if diagnostic_html:
            diagnostic = f"<html><b>{diagnostic}</b></html>"
        blocks.append("\n".join([
            f"Final-Recipient: rfc822; {address}",
            f"Original-Recipient: rfc822;{address}",
            f"Action: {action}",
            f"Status: {status}",
            "Remote-MTA: dns; mx.bounce.test",
            f"Diagnostic-Code: smtp; {diagnostic}",
        ]))
    text = "\n\n".join(blocks) + "\n"
    headers = (f"Message-ID: {message_id}\nFrom: {sender}\nTo: "
               f"{', '.join(r[0] for r in recipients)}\nSubject: Hello\n")
    return (
        head + "\n\n--B0\nContent-Type: text/plain; charset=us-ascii\n\n"
        "This is the mail system at host mta.test.\n\nYour message could not be delivered.\n"
        "\n--B0\nContent-Type: message/delivery-status\n\n" + text
        + "\n--B0\nContent-Type: text/rfc822-headers\n\n" + headers + "\n--B0--\n"
    ).replace("\n", "\r\n").encode()

