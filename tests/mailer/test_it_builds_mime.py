import email
from email import policy

import pytest
from django.core.exceptions import ValidationError

from mailer import mime
from tests.mailer.base import make_account, make_draft


def _parse(frozen):
    return email.message_from_bytes(frozen.eml, policy=policy.default)


@pytest.fixture
def acct(owner):
    return make_account(owner, from_name="Zoë Owner", reply_to="replies@example.com")


def test_it_keeps_attachments_byte_for_byte(owner, acct):
    blob = bytes(range(256)) * 100
    text = "naïve,ünïcode\r\nline2\n".encode()
    draft = make_draft(owner, acct, attachments=[("data.bin", "application/octet-stream", blob),
                                                 ("notes.csv", "text/csv", text)])
    parsed = _parse(mime.build_from_draft(draft))
    got = {a.get_filename(): a.get_payload(decode=True) for a in parsed.iter_attachments()}
    assert got == {"data.bin": blob, "notes.csv": text}


def test_it_never_writes_a_bcc_header(owner, acct):
    frozen = mime.build_from_draft(
        make_draft(owner, acct, to="a@example.org", bcc="hidden@example.org")
    )
    assert "Bcc" not in _parse(frozen) and b"hidden@example.org" not in frozen.eml
    assert ("hidden@example.org", "bcc") in frozen.recipients


def test_it_encodes_non_ascii_subjects_names_and_filenames(owner, acct):
    draft = make_draft(owner, acct, to="Jürgen Größe <j@example.org>", subject="Grüße aus Köln ☕",
                       attachments=[("Überblick März.pdf", "application/pdf", b"%PDF-1.4")])
    frozen = mime.build_from_draft(draft)
    head = frozen.eml.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()  # RFC 2047 encoded words, no raw UTF-8 in the headers
    assert b"Subject: =?utf-8?" in head and b"=?utf-8?" in head.split(b"To:")[1]
    assert b"filename*=utf-8''%C3%9Cberblick%20M%C3%A4rz.pdf" in frozen.eml  # RFC 2231
    parsed = _parse(frozen)
    assert parsed["Subject"] == "Grüße aus Köln ☕"
    assert parsed["To"].addresses[0].display_name == "Jürgen Größe"
    assert parsed["From"].addresses[0].display_name == "Zoë Owner"
    assert [a.get_filename() for a in parsed.iter_attachments()] == ["Überblick März.pdf"]


def test_it_sends_text_with_an_html_alternative(owner, acct):
    draft = make_draft(owner, acct, body_text="Plain ünïcode", body_html="<p>Rich</p>")
    parsed = _parse(mime.build_from_draft(draft))
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed.get_body(("plain",)).get_content().strip() == "Plain ünïcode"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Rich</p>"
    assert all(line.isascii() for line in parsed.as_bytes().splitlines())  # QP, no 8BITMIME needed


def test_it_uses_smtputf8_only_when_an_address_needs_it(owner, acct):
    ascii_idn = mime.build_from_draft(make_draft(owner, acct, to="info@bücher.de"))
    assert ascii_idn.recipients == [("info@xn--bcher-kva.de", "to")] and not ascii_idn.smtputf8
    utf8 = mime.build_from_draft(make_draft(owner, acct, to="jürgen@bücher.de"))
    assert utf8.smtputf8 and utf8.recipients == [("jürgen@bücher.de", "to")]
    assert "jürgen@bücher.de".encode() in utf8.eml.split(b"\r\n\r\n", 1)[0]


def test_it_adds_date_message_id_on_the_account_domain_and_reply_to(owner, acct):
    parsed = _parse(mime.build_from_draft(make_draft(owner, acct)))
    assert parsed["Message-ID"].endswith("@example.com>")
    assert parsed["Date"].datetime is not None
    assert str(parsed["Reply-To"]) == "replies@example.com"


@pytest.mark.parametrize("field", ["subject", "to", "cc", "reply_to"])
def test_it_refuses_line_breaks_in_header_values(owner, acct, field):
    value = {"subject": "Hi\r\nBcc: victim@example.org",
             "to": "a@example.org\nBcc: victim@example.org",
             "cc": "a@example.org\rX-Evil: 1",
             "reply_to": "a@example.org\r\nX-Evil: 1"}[field]
    with pytest.raises(ValidationError) as err:
        mime.build_from_draft(make_draft(owner, acct, **{field: value}))
    [msg] = err.value.message_dict[field]
    assert "line break" in msg


def test_it_refuses_a_line_break_in_the_sender_name(owner):
    acct = make_account(owner, from_name="Evil\r\nBcc: x@example.org")
    with pytest.raises(ValidationError) as err:
        mime.build_from_draft(make_draft(owner, acct))
    assert "line break" in err.value.message_dict["from_name"][0]


def test_it_names_each_invalid_address(owner, acct):
    draft = make_draft(owner, acct, to="good@example.org, bad@@example.org, Ann <ann@>",
                       cc="nodomain", bcc="also@example.org")
    with pytest.raises(ValidationError) as err:
        mime.build_from_draft(draft)
    errors = err.value.message_dict
    assert len(errors["to"]) == 2
    assert "'bad@@example.org' is not a valid address" in errors["to"][0]
    assert "'Ann <ann@>' is not a valid address" in errors["to"][1]
    assert errors["cc"] == [e for e in errors["cc"] if "'nodomain'" in e] and errors["cc"]
    assert "bcc" not in errors


def test_it_needs_a_recipient(owner, acct):
    with pytest.raises(ValidationError) as err:
        mime.build_from_draft(make_draft(owner, acct, to=""))
    assert "Add at least one recipient" in err.value.message_dict["to"][0]


def test_it_refuses_a_line_break_in_an_attachment_name(owner, acct):
    with pytest.raises(ValidationError) as err:
        mime.build_message(account=acct, to="a@example.org",
                           attachments=[("evil\r\nBcc: x@example.org.txt", "text/plain", b"x")])
    assert "line break" in err.value.message_dict["attachments"][0]
