"""mailer.mime reuses what does not change between messages (header classes, parsed MIME
headers, address headers, validated addresses). These tests hold it to the bytes the plain
stdlib ``email`` package makes, and to the account as it is now, not as it was."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from types import SimpleNamespace

import pytest
from email_validator import EmailNotValidError

from mailer import mime
from tests.mailer.base import make_account, make_draft

DATE = datetime(2024, 3, 1, 12, 0, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))
MID = "<fixed.1@example.com>"


def _plain_stdlib(account, *, to, cc="", reply_to="", subject="", body_text="", body_html="",
                  attachments=()):
    """The message as the stdlib alone makes it: fresh policy objects, headers parsed from
    scratch (what mailer.mime did before it reused anything)."""
    sender, sender_utf8 = mime.validate_address.__wrapped__(account.from_address)
    lists = {k: mime.parse_address_list(v, k, {}) for k, v in
             (("to", to), ("cc", cc), ("reply_to", reply_to or account.reply_to))}
    utf8 = sender_utf8 or any(a.smtputf8 for lst in lists.values() for a in lst)
    pol = policy.SMTPUTF8 if utf8 else policy.SMTP
    msg = EmailMessage(policy=pol)
    user, _, domain = sender.rpartition("@")
    msg["From"] = Address(display_name=account.from_name, username=user, domain=domain)
    for key, name in (("to", "To"), ("cc", "Cc"), ("reply_to", "Reply-To")):
        if lists[key]:
            msg[name] = [a.header_address() for a in lists[key]]
    msg["Subject"] = subject
    msg["Date"] = format_datetime(DATE)
    msg["Message-ID"] = MID
    msg.set_content(body_text, cte=mime._cte(body_text))
    if body_html:
        msg.add_alternative(body_html, subtype="html", cte=mime._cte(body_html))
    for name, ctype, data in attachments:
        mime._add_attachment(msg, data, name, ctype)
    return msg.as_bytes(policy=pol)


CASES = [
    dict(to="rcpt@example.net", subject="B 1", body_text="Hello.\n"),
    dict(to="Jürgen Größe <j@example.org>, \"Doe, Jane\" <jane@example.org>", cc="info@bücher.de",
         subject="Grüße aus Köln ☕ " * 6, body_text="Plain ünïcode\n", body_html="<p>Rich</p>",
         attachments=[("Überblick März.pdf", "application/pdf", b"%PDF-1.4"),
                      ("data.bin", "", bytes(range(256)))]),
    dict(to="jürgen@bücher.de", reply_to="Ann <ann@example.org>", subject="SMTPUTF8",
         body_text="x" * 1200),
]
ACCOUNTS = [
    SimpleNamespace(from_name="", from_address="bench@example.com", reply_to=""),
    SimpleNamespace(from_name="Zoë Owner, Sales", from_address="zoe@example.com",
                    reply_to="replies@example.com"),
    SimpleNamespace(from_name="Jürgen", from_address="jürgen@bücher.de", reply_to=""),
]


@pytest.mark.parametrize("account", ACCOUNTS)
@pytest.mark.parametrize("case", CASES)
def test_it_makes_the_same_bytes_as_the_plain_stdlib(account, case):
    # Twice: the second build runs on warm caches, where a shared header would show.
    for _ in range(2):
        random.seed(7)  # the multipart boundary is random
        expected = _plain_stdlib(account, **case)
        random.seed(7)
        frozen = mime.build_message(account=account, date=DATE, message_id=MID, **case)
        assert frozen.eml == expected


def test_it_uses_the_accounts_from_as_it_is_now(owner):
    account = make_account(owner, from_name="Old Name", from_address="old@example.com")
    first = mime.build_from_draft(make_draft(owner, account))
    account.from_name, account.from_address = "Zoë New", "new@bücher.de"
    account.save()
    second = mime.build_from_draft(make_draft(owner, account))
    assert b"From: Old Name <old@example.com>\r\n" in first.eml
    assert first.envelope_from == "old@example.com" and first.message_id.endswith("@example.com>")
    assert b"From: =?utf-8?q?Zo=C3=AB?= New <new@xn--bcher-kva.de>\r\n" in second.eml
    assert second.envelope_from == "new@xn--bcher-kva.de"
    assert second.message_id.endswith("@xn--bcher-kva.de>")


def test_a_shared_header_is_encoded_for_each_messages_policy(owner):
    # The same From, first in an SMTPUTF8 message (raw UTF-8), then in a plain one (RFC 2047).
    account = make_account(owner, from_name="Zoë", from_address="zoe@example.com")
    utf8 = mime.build_from_draft(make_draft(owner, account, to="jürgen@bücher.de"))
    plain = mime.build_from_draft(make_draft(owner, account, to="j@example.org"))
    again = mime.build_from_draft(make_draft(owner, account, to="jürgen@bücher.de"))
    assert utf8.smtputf8 and "From: Zoë <zoe@example.com>\r\n".encode() in utf8.eml
    assert not plain.smtputf8 and b"From: =?utf-8?q?Zo=C3=AB?= <zoe@example.com>\r\n" in plain.eml
    assert "From: Zoë <zoe@example.com>\r\n".encode() in again.eml


def test_it_refuses_a_bad_address_every_time():
    # Only answers are remembered; a refusal is worked out (and raised) again.
    for _ in range(2):
        with pytest.raises(EmailNotValidError):
            mime.validate_address("bad@@example.org")
    assert mime.validate_address("Someone@Example.ORG") == ("Someone@example.org", False)
