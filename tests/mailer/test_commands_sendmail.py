"""``manage.py sendmail``: builds a draft, sends it through the send service, prints the id."""

from __future__ import annotations

import datetime as dt
import os
from email import message_from_bytes, policy
from io import StringIO

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.utils import timezone

from mailer import delivery
from mailer.models import Attachment, Draft, OutboxMessage
from tests.mailer.base import make_account

Status = OutboxMessage.Status


def sendmail(*args) -> OutboxMessage:
    out = StringIO()
    call_command("sendmail", "--user", "owner", *args, stdout=out)
    return OutboxMessage.objects.get(pk=int(out.getvalue().strip()))


def test_it_queues_a_message_with_html_and_attachments_and_hides_bcc(account, server, tmp_path):
    pdf = bytes(range(256)) * 40
    (tmp_path / "report.pdf").write_bytes(pdf)
    (tmp_path / "body.html").write_text("<p>Hi <b>Bob</b></p>")
    message = sendmail(
        "--account",
        account.label,
        "--to",
        "Bob <bob@example.com>",
        "--to",
        "ann@example.com",
        "--cc",
        "carl@example.com",
        "--bcc",
        "hidden@example.com",
        "--subject",
        "Quarterly ✓",
        "--body",
        "Hello",
        "--html-file",
        str(tmp_path / "body.html"),
        "--attach",
        str(tmp_path / "report.pdf"),
    )
    assert message.status == Status.QUEUED and message.hold_until is None
    kinds = list(message.recipients.values_list("address", "kind"))
    assert kinds == [
        ("bob@example.com", "to"),
        ("ann@example.com", "to"),
        ("carl@example.com", "cc"),
        ("hidden@example.com", "bcc"),
    ]
    parsed = message_from_bytes(message.read_eml(), policy=policy.default)
    assert parsed["Subject"] == "Quarterly ✓" and "Bcc" not in parsed
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hi <b>Bob</b></p>"
    [att] = list(parsed.iter_attachments())
    assert att.get_filename() == "report.pdf" and att.get_content() == pdf
    assert not Draft.objects.exists()  # consumed by the send

    # And it really goes out (one delivery step, in this process, to the test server).
    assert delivery.deliver(message.pk) == "sent"
    [received] = server.received
    assert sorted(received.rcpt_tos) == sorted(a for a, _ in kinds)


def test_it_uses_the_default_account_and_reads_the_body_from_a_file(account, tmp_path):
    (tmp_path / "body.txt").write_text("Line one\nLine two\n")
    message = sendmail(
        "--to", "bob@example.com", "--subject", "S", "--body-file", str(tmp_path / "body.txt")
    )
    assert message.account == account
    assert b"Line two" in message.read_eml()


def test_it_holds_or_schedules_when_asked(account):
    held = sendmail("--to", "bob@example.com", "--subject", "S", "--body", "b", "--hold", "30")
    assert held.status == Status.SCHEDULED
    assert held.hold_until > timezone.now() + dt.timedelta(seconds=25)
    when = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)
    later = sendmail(
        "--to", "bob@example.com", "--subject", "S", "--body", "b", "--at", when.isoformat()
    )
    assert later.status == Status.SCHEDULED and later.scheduled_at == when


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--to", "not-an-address"], "'not-an-address' is not a valid address"),
        (["--to", "bob@example.com", "--at", "tomorrow"], "not an ISO-8601 time"),
        (["--to", "bob@example.com", "--at", "2001-01-01T00:00"], "is in the past"),
        (["--to", "bob@example.com", "--hold", "-1"], "0 or more"),
        (["--subject", "x"], "at least one recipient"),
        (["--to", "bob@example.com", "--account", "Nope"], "no account labelled 'Nope'"),
        (
            ["--to", "bob@example.com", "--attach", "/nonexistent/file.pdf"],
            "Cannot attach /nonexistent/file.pdf",
        ),
    ],
)
def test_it_refuses_bad_input_in_plain_words(account, args, words):
    with pytest.raises(CommandError, match=words):
        call_command("sendmail", "--user", "owner", "--subject", "S", "--body", "b", *args)
    assert not OutboxMessage.objects.exists() and not Draft.objects.exists()


def test_a_refused_message_leaves_no_draft_rows_or_files(account, tmp_path):
    (tmp_path / "a.txt").write_text("attached")
    before = (
        set(default_storage.listdir("attachments")[1])
        if default_storage.exists("attachments")
        else set()
    )
    with pytest.raises(CommandError, match="line break"):
        call_command(
            "sendmail",
            "--user",
            "owner",
            "--to",
            "bob@example.com",
            "--subject",
            "Evil\r\nBcc: x@example.com",
            "--body",
            "b",
            "--attach",
            str(tmp_path / "a.txt"),
        )
    assert not Draft.objects.exists() and not Attachment.objects.exists()
    after = (
        set(default_storage.listdir("attachments")[1])
        if default_storage.exists("attachments")
        else set()
    )
    assert after == before


def test_it_asks_which_account_when_there_is_no_default(owner):
    make_account(owner, label="A")
    make_account(owner, label="B")
    with pytest.raises(CommandError, match="say which with --account"):
        sendmail("--to", "bob@example.com", "--subject", "S", "--body", "b")


def test_it_refuses_an_attachment_over_the_limit(account, tmp_path, settings):
    settings.MAILROOM_MAX_ATTACHMENT_BYTES = 1000
    (tmp_path / "big.bin").write_bytes(b"x" * 2000)
    with pytest.raises(CommandError, match="at most 0.0 MB|MAILROOM_MAX_ATTACHMENT_BYTES"):
        sendmail(
            "--to",
            "bob@example.com",
            "--subject",
            "S",
            "--body",
            "b",
            "--attach",
            str(tmp_path / "big.bin"),
        )


def test_it_attaches_a_file_whose_name_is_not_utf8(account, tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"caf\xe9-r\xe9sum\xe9.txt")
    with open(path, "wb") as fh:
        fh.write(b"content\n")
    message = sendmail(
        "--to", "bob@example.com", "--subject", "S", "--body", "b", "--attach", os.fsdecode(path)
    )
    [attachment] = message.attachments.all()
    assert attachment.filename == "café-résumé.txt"  # read as Latin-1, not lone surrogates


@pytest.mark.parametrize("option", ["--to", "--subject", "--body"])
def test_it_refuses_an_argument_that_is_not_utf8(account, option):
    """A non-UTF-8 byte in an argument reaches Python as a lone surrogate (PEP 383, as
    ``os.fsdecode`` makes it here): a plain-words refusal naming the option, no traceback."""
    args = {"--to": "bob@example.com", "--subject": "S", "--body": "b"}
    args[option] = os.fsdecode(b"caf\xe9@example.com" if option == "--to" else b"caf\xe9")
    flat = [x for pair in args.items() for x in pair]
    with pytest.raises(CommandError, match=f"{option} is not valid UTF-8 text"):
        call_command("sendmail", "--user", "owner", *flat)
    assert not OutboxMessage.objects.exists() and not Draft.objects.exists()


def test_it_asks_for_a_delivery_report_when_told(account):
    asked = sendmail("--to", "bob@example.com", "--subject", "S", "--body", "b",
                     "--delivery-report")
    plain = sendmail("--to", "bob@example.com", "--subject", "S", "--body", "b")
    assert asked.delivery_report and not plain.delivery_report
    assert asked.envid and asked.envid != plain.envid
