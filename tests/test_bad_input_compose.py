"""Bad input at compose time, table-driven: every case is sent from the compose page (the
path a person takes) and must end in a clear error in plain words next to the problem —
and nothing lost: the draft still holds exactly what was typed, attachments included, and
nothing was queued. Inputs the page can make safe (file names) are made safe instead, and
the file is kept."""

from __future__ import annotations

import hashlib
import html
import io
from dataclasses import dataclass, field

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from mailer.models import Draft, OutboxMessage, SmtpAccount
from tests.bad_input import *  # noqa: F403  (the fixtures: owner, owner_client, account…)
from tests.bad_input import assert_clear_error, assert_draft_kept
from tests.webui.conftest import make_draft

BASE = {"to": "alice@example.org", "cc": "", "bcc": "", "reply_to": "",
        "subject": "Quarterly report", "body_text": "Hello.", "body_html": ""}
NOTES = ("notes.txt", b"some notes\n")


@dataclass
class Case:
    id: str
    fields: dict[str, str]
    words: tuple[str, ...]  # what the error must say
    files: list[tuple[str, bytes]] = field(default_factory=lambda: [NOTES])

    def param(self):
        return pytest.param(self, id=self.id)


INJECTION = "Bcc: eve@example.net"
REFUSED = [
    # Header injection: CR, LF or both inside any header field.
    Case("crlf-subject", {"subject": f"Report\r\n{INJECTION}"}, ("subject", "line break")),
    Case("lf-subject", {"subject": f"Report\n{INJECTION}"}, ("subject", "line break")),
    Case("cr-subject", {"subject": f"Report\r{INJECTION}"}, ("subject", "line break")),
    Case("crlf-to-address", {"to": f"alice@example.org\r\n{INJECTION}"}, ("To", "line break")),
    Case("lf-cc-address", {"cc": f"bob@example.org\n{INJECTION}"}, ("Cc", "line break")),
    Case("crlf-bcc-address", {"bcc": "bob@example.org\r\nSubject: x"}, ("Bcc", "line break")),
    Case("crlf-reply-to", {"reply_to": f"ann@example.org\r\n{INJECTION}"},
         ("Reply-To", "line break")),
    Case("crlf-display-name", {"to": f'"Ann\r\n{INJECTION}" <ann@example.org>'},
         ("To", "line break")),
    Case("lf-display-name-cc", {"cc": f"Bob\n{INJECTION} <bob@example.org>"},
         ("Cc", "line break")),
    # Line breaks other than CR and LF (str.splitlines() splits on them, and the email
    # package refuses them in a header: they once made sending fail with a raw ValueError).
    Case("u2028-subject", {"subject": f"Report\u2028{INJECTION}"}, ("subject", "line break")),
    Case("u2029-subject", {"subject": "Report\u2029x"}, ("subject", "line break")),
    Case("form-feed-subject", {"subject": "Report\x0cx"}, ("subject", "line break")),
    Case("nel-subject", {"subject": "Report\x85x"}, ("subject", "line break")),
    Case("u2028-display-name", {"to": '"Ann\u2028X" <ann@example.org>'}, ("To", "line break")),
    Case("bell-subject", {"subject": "Report\x07"}, ("subject", "control character", "U+0007")),
    Case("escape-in-cc-name", {"cc": "Bob\x1b[31m <bob@example.org>"},
         ("Cc", "control character", "U+001B")),
    # Addresses that are not addresses.
    Case("invalid-address", {"to": "not-an-address"}, ("not-an-address", "not a valid address")),
    Case("address-without-domain", {"to": "ann@"}, ("ann@", "not a valid address")),
    Case("address-without-local-part", {"to": "@example.org"}, ("not a valid address",)),
    Case("address-two-at-signs", {"to": "ann@@example.org"}, ("not a valid address",)),
    Case("address-with-space", {"to": "ann smith@example.org"}, ("not a valid address",)),
    Case("address-hyphen-after-at", {"to": "ann@-b.example"}, ("not a valid address",)),
    Case("address-bad-ip-literal", {"to": "ann@[300.1.1.1]"}, ("not a valid address",)),
    Case("address-two-dots", {"to": "ann@b..example"}, ("not a valid address",)),
    Case("address-three-parts", {"to": "a@b@c"}, ("not a valid address",)),
    Case("one-bad-among-good", {"to": "alice@example.org, bob@, carol@example.org"},
         ("bob@", "not a valid address")),
    Case("bad-cc-good-to", {"cc": "bob at example.org"}, ("Cc", "not a valid address")),
    Case("bad-reply-to", {"reply_to": "reply-here"}, ("Reply-To", "not a valid address")),
    Case("no-recipient", {"to": ""}, ("at least one recipient",)),
    Case("only-separators", {"to": " , ; ,"}, ("at least one recipient",)),
    Case("very-long-local-part", {"to": "a" * 250 + "@example.org"}, ("not a valid address",
                                                                       "too long")),
    Case("very-long-domain-label", {"to": "ann@" + "d" * 64 + ".example.org"},
         ("not a valid address",)),
    Case("very-long-address", {"to": "ann@" + ".".join(["d" * 60] * 5) + ".org"},
         ("not a valid address", "too long")),
    Case("quoted-local-part", {"to": '"ann smith"@example.org'}, ("not a valid address",)),
    # Internationalised domains that are not valid IDNA.
    Case("idn-bad-punycode", {"to": "ann@xn--zz-.example"}, ("not a valid address",)),
    Case("idn-underscore", {"to": "ann@exa_mple.org"}, ("not a valid address",)),
    Case("idn-leading-hyphen", {"to": "ann@-bücher.example"}, ("not a valid address",)),
    Case("idn-disallowed-char", {"to": "ann@bü☃cher.example"}, ("not a valid address",)),
]


def _post(client, account, fields: dict[str, str], files, action="send", **extra):
    data = {**BASE, **fields, "account": account.pk, "action": action,
            "confirm_no_attachment": "on", **extra}
    data["attachments"] = [SimpleUploadedFile(name, content) for name, content in files]
    return client.post("/compose/", data)


def _page_text(response) -> str:
    return html.unescape(response.content.decode())


@pytest.mark.parametrize("case", [c.param() for c in REFUSED])
def test_it_refuses_with_a_clear_error_and_keeps_the_draft(case, owner, owner_client, account):
    response = _post(owner_client, account, case.fields, case.files)
    assert response.status_code == 400
    assert_clear_error(_page_text(response), *case.words)
    typed = {**BASE, **case.fields}
    files = [(n, hashlib.sha256(c).hexdigest()) for n, c in case.files]
    # Django's form keeps a text field as typed, minus surrounding whitespace.
    expected = {k: v.strip() for k, v in typed.items()}
    draft = assert_draft_kept(owner, files=files, **expected)
    # The error page shows the draft again, ready to be fixed and sent.
    assert f'name="draft" value="{draft.pk}"' in response.content.decode()


@pytest.fixture
def no_smtputf8(account):
    SmtpAccount.objects.filter(pk=account.pk).update(capabilities={
        "esmtp": True, "extensions": {"PIPELINING": "", "SIZE": "1000000"}, "auth": [],
        "size": 1000000, "smtputf8": False, "eightbitmime": False,
    })
    account.refresh_from_db()
    return account


@pytest.mark.parametrize("to", [
    pytest.param("用户@例子.广告", id="eai-address-server-without-smtputf8"),
    pytest.param("josé@example.org", id="eai-local-part-server-without-smtputf8"),
])
def test_it_refuses_an_international_address_the_server_cannot_take(
    to, owner, owner_client, no_smtputf8
):
    response = _post(owner_client, no_smtputf8, {"to": to}, [NOTES])
    assert response.status_code == 400
    assert_clear_error(_page_text(response), "SMTPUTF8")
    assert_draft_kept(owner, to=to)


def test_it_refuses_a_message_larger_than_the_servers_limit(owner, owner_client, no_smtputf8):
    big = ("big.bin", b"\0" * 900_000)  # 1.2 MB after base64; the server takes 1 MB
    response = _post(owner_client, no_smtputf8, {}, [big])
    assert response.status_code == 400
    assert_clear_error(_page_text(response), "MB")
    assert_draft_kept(owner, files=[("big.bin", hashlib.sha256(big[1]).hexdigest())])


# --- uploads: refused with a clear error, the rest of the draft kept ------------------


def test_it_refuses_a_zero_byte_file_and_keeps_the_rest(owner, owner_client, account):
    response = _post(owner_client, account, {"subject": "With an empty file"},
                     [NOTES, ("empty.txt", b"")])
    assert response.status_code == 400
    assert_clear_error(_page_text(response), "empty")
    assert_draft_kept(owner, subject="With an empty file",
                      files=[(NOTES[0], hashlib.sha256(NOTES[1]).hexdigest())])


@override_settings(MAILROOM_MAX_ATTACHMENT_BYTES=1024 * 1024)
def test_it_refuses_an_over_limit_file_and_keeps_the_rest(owner, owner_client, account):
    response = _post(owner_client, account, {"subject": "Too big"},
                     [NOTES, ("huge.bin", b"x" * (1024 * 1024 + 1))])
    assert response.status_code == 400
    assert_clear_error(_page_text(response), "huge.bin", "limit", "1 MB")
    assert_draft_kept(owner, subject="Too big",
                      files=[(NOTES[0], hashlib.sha256(NOTES[1]).hexdigest())])


# --- uploads: hostile file names are made safe, the file is kept -----------------------


def _raw_upload(client, account, filename: bytes, content: bytes):
    """A multipart body built by hand, for file names the test client cannot send:
    ``filename`` is the whole parameter (``filename="…"`` or RFC 2231 ``filename*=…``)."""
    boundary = b"----mailroom-bad-input"
    parts = []
    for name, value in {**BASE, "account": str(account.pk), "action": "save"}.items():
        parts.append(b'Content-Disposition: form-data; name="%s"\r\n\r\n%s'
                     % (name.encode(), value.encode()))
    parts.append(b'Content-Disposition: form-data; name="attachments"; %s\r\n'
                 b"Content-Type: application/octet-stream\r\n\r\n%s" % (filename, content))
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + boundary + b"--\r\n"
    return client.generic("POST", "/compose/", body,
                          content_type=f"multipart/form-data; boundary={boundary.decode()}")


NAMES = [
    pytest.param(b'filename="../../etc/passwd"', id="unix-path-separators"),
    pytest.param(b'filename="..\\..\\windows\\win.ini"', id="windows-path-separators"),
    pytest.param(b'filename="/absolute/path/report.pdf"', id="absolute-path"),
    pytest.param(b'filename="bell\x07escape\x1b[31mred.txt"', id="control-characters"),
    pytest.param(b'filename="nul\x00byte.txt"', id="nul-byte"),
    pytest.param(b'filename="' + b"a" * 296 + b'.pdf"', id="300-characters"),
    # RFC 2231: a name in another charset (how a client sends a name that is not UTF-8).
    pytest.param(b"filename*=iso-8859-1''caf%E9-r%E9sum%E9.pdf", id="non-utf8-latin1"),
    pytest.param(b"filename*=utf-8''%FF%FE%FD.bin", id="non-utf8-invalid-bytes"),
    pytest.param(b'filename="<script>alert(1)</script>.html"', id="markup-in-name"),
]


@pytest.mark.parametrize("filename", NAMES)
def test_it_keeps_a_file_with_a_hostile_name_under_a_safe_name(
    filename, owner, owner_client, account
):
    content = b"the file's content\n"
    response = _raw_upload(owner_client, account, filename, content)
    assert response.status_code == 302  # saved
    draft = Draft.objects.get(owner=owner)
    (attachment,) = draft.attachments.all()
    name = attachment.filename
    assert "/" not in name and "\\" not in name and name not in ("", ".", "..")
    assert name.isprintable(), repr(name)
    assert len(name) <= 255
    if filename.endswith((b'.pdf"', b".pdf")):
        assert name.endswith(".pdf")  # shortened, but it still opens as what it is
    name.encode("utf-8")  # a real string, no lone surrogates
    with attachment.file.open("rb") as fh:
        assert fh.read() == content
    assert OutboxMessage.objects.count() == 0


# --- text that must go out intact ------------------------------------------------------


@pytest.fixture
def sink_account(owner, smtp_server):
    return SmtpAccount.objects.create(
        owner=owner, label="Sink", from_address="owen@example.com", host=smtp_server.host,
        port=smtp_server.port, security="none", auth_mechanism="none",
    )


BODIES = [
    pytest.param("one\rtwo\nthree\r\nfour", ["one", "two", "three", "four"], id="bare-cr-and-lf"),
    pytest.param("x" * 10_000 + "\nend", ["x" * 10_000, "end"], id="line-of-10000-characters"),
    pytest.param("é" * 5_000 + "\nend", ["é" * 5_000, "end"], id="long-non-ascii-line"),
    pytest.param(".\n..\n.hidden\n", [".", "..", ".hidden"], id="lines-starting-with-dots"),
]


@pytest.mark.parametrize(("body", "lines"), BODIES)
def test_it_delivers_an_awkward_body_intact(body, lines, owner, sink_account, smtp_server):
    from email import policy
    from email.parser import BytesParser

    from mailer import delivery, services

    draft = make_draft(owner, sink_account, body_text=body)
    message = services.send_draft(owner, draft, hold_seconds=0)
    assert delivery.deliver(message.pk) == "sent"
    (received,) = smtp_server.messages
    raw = received.content
    # On the wire every line ends in CRLF: no bare CR or LF (the "SMTP smuggling" class).
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    text = BytesParser(policy=policy.default).parsebytes(raw).get_body(("plain",)).get_content()
    assert text.splitlines() == lines


@pytest.mark.parametrize(
    ("raw_name", "refused_with"),
    [
        pytest.param(b"caf\xe9-latin1.txt", None, id="command-non-utf8-file-name"),
        pytest.param(
            b"line\nbreak.txt", ("line break", "rename"), id="command-file-name-with-line-break"
        ),
    ],
)
def test_the_sendmail_command_keeps_or_clearly_refuses_an_odd_file_name(
    raw_name, refused_with, owner, account, tmp_path
):
    import os

    from django.core.management import CommandError, call_command

    path = os.path.join(os.fsencode(tmp_path), raw_name)
    with open(path, "wb") as fh:
        fh.write(b"content\n")
    args = ["sendmail", "--user", owner.username, "--to", "alice@example.org", "--subject",
            "Odd file", "--body", "See the file.", "--attach", os.fsdecode(path)]
    if refused_with:
        with pytest.raises(CommandError) as info:
            call_command(*args, stdout=io.StringIO())
        assert_clear_error(str(info.value), *refused_with)
        assert not OutboxMessage.objects.exists() and not Draft.objects.exists()
        return
    call_command(*args, stdout=io.StringIO())
    (message,) = OutboxMessage.objects.all()
    (attachment,) = message.attachments.all()
    attachment.filename.encode("utf-8")  # a real string, stored and shown safely
    assert attachment.filename.isprintable()


# Whether a domain exists is the server's call: reserved, internal and single-label domains
# and domain literals are valid addresses (issue 11, point 1).
VALID_ODD_ADDRESSES = [
    "alice@example.test", "x@corp.local", "bob@relay.test", "root@localhost", "ops@relay",
    "x@host.internal", "y@office.lan", "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]",
]


@pytest.mark.parametrize("address", VALID_ODD_ADDRESSES)
def test_it_sends_to_reserved_internal_and_literal_addresses(
    address, owner, owner_client, sink_account, smtp_server
):
    from mailer import delivery

    response = _post(owner_client, sink_account, {"to": address}, [])
    assert response.status_code == 302, _page_text(response)
    message = OutboxMessage.objects.get(owner=owner)
    OutboxMessage.objects.filter(pk=message.pk).update(status="queued")  # skip the undo hold
    assert delivery.deliver(message.pk) == "sent"
    (received,) = smtp_server.messages
    assert received.rcpt_tos == [address]


@pytest.mark.parametrize("address", VALID_ODD_ADDRESSES)
def test_it_takes_them_as_the_accounts_sender(address, owner, smtp_server):
    """The account form and ``smtpaccount add`` (both through mailer.validators) take them
    as the From address, and the envelope carries it verbatim."""
    from django.core.management import call_command

    from mailer import delivery, services
    from mailer.validators import validate_mail_address

    validate_mail_address(address)  # the account form's and the model's validator
    call_command(
        "smtpaccount", "add", "--user", owner.username, "--label", "Odd", "--host",
        smtp_server.host, "--port", str(smtp_server.port), "--security", "none",
        "--auth", "none", "--from-address", address, stdout=io.StringIO(),
    )
    account = SmtpAccount.objects.get(owner=owner, label="Odd")
    assert account.from_address == address
    draft = make_draft(owner, account, to="ann@example.org")
    message = services.send_draft(owner, draft, hold_seconds=0)
    assert delivery.deliver(message.pk) == "sent"
    (received,) = smtp_server.messages
    assert received.mail_from == address


@override_settings(MAILROOM_ALLOWED_RECIPIENT_DOMAINS=["example.org", "corp.local"])
def test_an_operator_may_restrict_recipient_domains(owner, owner_client, account):
    response = _post(owner_client, account, {"to": "ann@example.org, bob@sub.corp.local, "
                                             "eve@elsewhere.test"}, [])
    assert response.status_code == 400
    text = _page_text(response)
    assert_clear_error(text, "eve@elsewhere.test", "outside the domains", "example.org, corp.local")
    assert "ann@example.org'" not in text and "bob@sub.corp.local'" not in text
    assert_draft_kept(owner, files=[], **{k: v.strip() for k, v in
                                          {**BASE, "to": "ann@example.org, bob@sub.corp.local, "
                                           "eve@elsewhere.test"}.items()})


def test_it_reports_a_nul_character_once_in_plain_words(owner, owner_client, account):
    response = _post(owner_client, account, {"subject": "Report\x00x"}, [])
    assert response.status_code == 400
    text = _page_text(response)
    assert text.count("NUL character") == 1 and "Null characters are not allowed" not in text
    assert_clear_error(text, "Subject", "NUL character", "remove it")


LONG_NAME = "quarterly-report-" + "x" * 290 + ".pdf"


def test_a_long_file_name_keeps_its_extension_on_every_way_in(owner, owner_client, account,
                                                              tmp_path):
    """A 300-character name is shortened in its stem, never losing the extension, whether
    the file came through the compose form, the upload endpoint or ``manage.py sendmail``."""
    from django.core.management import call_command

    from mailer.attachments import MAX_NAME

    draft = make_draft(owner, account)
    reply = owner_client.post(f"/drafts/{draft.pk}/attachments/",
                              {"file": SimpleUploadedFile(LONG_NAME, b"data")})
    assert reply.status_code == 200 and reply["Content-Type"] == "application/json"
    _post(owner_client, account, {}, [(LONG_NAME, b"more")], action="save")
    path = tmp_path / ("r" * 240 + ".tar.gz")  # a file name has 255 bytes at most
    path.write_bytes(b"%PDF-1.4\n")
    call_command("sendmail", "--user", owner.username, "--account", account.label, "--to",
                 "ann@example.org", "--subject", "S", "--body", "b", "--attach", str(path),
                 stdout=io.StringIO())
    from mailer.models import Attachment

    names = list(Attachment.objects.values_list("filename", flat=True))
    assert len(names) == 3
    for name in names:
        assert len(name) <= MAX_NAME and (name.endswith(".tar.gz") or name.endswith(".pdf")), name
    assert any(n.startswith("quarterly-report-xxx") for n in names)


def test_the_upload_endpoint_answers_json_when_it_refuses(owner, owner_client, account,
                                                          settings):
    settings.MAILROOM_MAX_ATTACHMENT_BYTES = 3
    draft = make_draft(owner, account)
    for files in ({"file": SimpleUploadedFile(LONG_NAME, b"too big")}, {}):
        reply = owner_client.post(f"/drafts/{draft.pk}/attachments/", files)
        assert reply.status_code == 400 and reply["Content-Type"] == "application/json"
        assert reply.json()["error"]


@pytest.mark.parametrize(("name", "ending"), [
    ("a" * 300 + ".pdf", ".pdf"), ("b" * 300 + ".tar.gz", ".tar.gz"),
    ("c" * 300, "…"), ("d" * 280 + "." + "e" * 40, "…"), ("  ", "attachment"),
])
def test_it_shortens_a_name_in_its_stem(name, ending):
    from mailer.attachments import MAX_NAME, display_name

    shown = display_name(name)
    assert len(shown) <= MAX_NAME and shown.endswith(ending)
