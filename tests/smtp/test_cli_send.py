"""``python -m mailer.smtp send`` against real aiosmtpd servers, run as a subprocess: every
exit status, the JSON object, an .eml sent byte for byte, attachments arriving intact."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.smtp.cli_run import run_cli, run_json
from tests.smtp_servers import MiniSMTP, RunningServer, ScriptedServer

SENDER = "alice@example.com"


def _send(server: RunningServer | ScriptedServer, *recipients: str, extra: tuple = ()):
    args = [
        "send",
        "--server",
        f"{server.host}:{server.port}",
        "--security",
        "none",
        "--from",
        SENDER,
        "--timeout",
        "10",
    ]
    for rcpt in recipients:
        args += ["--to", rcpt]
    return [*args, *extra]


def _parse(content: bytes) -> email.message.EmailMessage:
    """The received message as the email package sees it (CRLF read as line ends)."""
    return email.message_from_bytes(content.replace(b"\r\n", b"\n"), policy=policy.default)


def _message(subject: str = "Hello", body: str = "Hi there.\n") -> tuple[str, ...]:
    return ("--subject", subject, "--body", body)


def test_it_exits_0_and_reports_every_recipient_as_json(smtp_server: RunningServer) -> None:
    status, out = run_json(
        *_send(
            smtp_server,
            "bob@example.net",
            "carol@example.net",
            extra=_message("Quarterly report", "Numbers attached.\n"),
        )
    )
    assert status == 0
    assert out["accepted"] == ["bob@example.net", "carol@example.net"]
    assert out["rejected"] == {}
    assert out["error"] is None
    assert out["exit_status"] == 0
    assert out["capabilities"]["esmtp"] is True
    assert "8BITMIME" in out["capabilities"]["extensions"]
    assert "transcript" not in out
    assert out["data_reply"] == "250 2.0.0 Ok: queued as Q1"
    [received] = smtp_server.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["bob@example.net", "carol@example.net"]
    msg = _parse(received.content)
    assert msg["Subject"] == "Quarterly report"
    assert msg["From"] == SENDER
    assert msg["To"] == "bob@example.net, carol@example.net"
    assert msg["Date"]
    assert msg["Message-ID"] == out["message_id"]
    assert out["message_id"].endswith("@example.com>")
    assert msg.get_content() == "Numbers attached.\n"


def test_it_says_so_in_plain_words_when_all_is_well(smtp_server: RunningServer) -> None:
    run = run_cli(*_send(smtp_server, "bob@example.net", extra=_message()))
    assert run.returncode == 0
    assert "Sent: the recipient accepted the message." in run.stdout
    assert "accepted  bob@example.net" in run.stdout
    assert run.stderr == ""


def test_it_exits_1_for_partial_acceptance(smtp_server: RunningServer) -> None:
    smtp_server.handler.reply_at("rcpt", "550 5.1.1 No such user here", address="ghost@example.net")
    args = _send(smtp_server, "bob@example.net", "ghost@example.net", extra=_message())
    status, out = run_json(*args)
    assert status == 1
    assert out["accepted"] == ["bob@example.net"]
    assert out["rejected"] == {
        "ghost@example.net": {
            "code": 550,
            "enhanced": "5.1.1",
            "text": "No such user here",
            "transient": False,
        }
    }
    assert out["error"] is None
    assert smtp_server.messages[-1].rcpt_tos == ["bob@example.net"]

    run = run_cli(*args)
    assert run.returncode == 1
    assert "Partly sent: 1 of 2 recipients accepted, 1 refused." in run.stdout
    assert "refused   ghost@example.net: 550 5.1.1 No such user here (permanent)" in run.stdout


def test_it_exits_2_when_every_recipient_is_deferred(smtp_server: RunningServer) -> None:
    smtp_server.handler.reply_at("rcpt", "451 4.3.0 Mailbox busy, try later")
    status, out = run_json(
        *_send(smtp_server, "bob@example.net", "carol@example.net", extra=_message())
    )
    assert status == 2
    assert out["accepted"] == []
    assert set(out["rejected"]) == {"bob@example.net", "carol@example.net"}
    assert all(r["transient"] and r["code"] == 451 for r in out["rejected"].values())
    assert out["error"]["type"] == "SMTPRecipientsRefused"
    assert out["error"]["transient"] is True
    assert smtp_server.messages == []


def test_it_exits_3_when_every_recipient_is_refused(smtp_server: RunningServer) -> None:
    smtp_server.handler.reply_at("rcpt", "550 5.1.1 No such user")
    run = run_cli(*_send(smtp_server, "ghost@example.net", extra=_message()))
    assert run.returncode == 3
    assert "refused   ghost@example.net: 550 5.1.1 No such user (permanent)" in run.stdout
    assert "Not sent:" in run.stderr
    assert "What to do: Check the recipient addresses" in run.stderr


def test_it_exits_3_when_the_sender_is_refused(smtp_server: RunningServer) -> None:
    smtp_server.handler.reply_at("mail", "553 5.7.1 Sender address rejected: not owned")
    status, out = run_json(*_send(smtp_server, "bob@example.net", extra=_message()))
    assert status == 3
    assert out["error"]["type"] == "SMTPSenderRefused"
    assert out["error"]["code"] == 553
    assert out["error"]["enhanced"] == "5.7.1"
    assert out["error"]["phase"] == "mail"
    assert "Check --from" in out["error"]["hint"]


def test_it_exits_2_when_the_server_is_down() -> None:
    port = free_port()  # nothing listens there
    run = run_cli(
        "send",
        "--server",
        f"127.0.0.1:{port}",
        "--security",
        "none",
        "--from",
        SENDER,
        "--to",
        "bob@example.net",
        *_message(),
    )
    assert run.returncode == 2
    assert "Not sent:" in run.stderr
    assert "What to do: Check --server (host name and port)" in run.stderr
    assert "Message-ID" not in run.stdout  # nothing was sent


@pytest.mark.parametrize(
    ("reply", "status"),
    [("554 5.6.0 Message looks like spam", 3), ("451 4.7.1 Greylisted, come back later", 2)],
)
def test_it_exits_by_the_reply_after_the_data(
    smtp_server: RunningServer, reply: str, status: int
) -> None:
    smtp_server.handler.reply_at("after-data", reply)
    got, out = run_json(*_send(smtp_server, "bob@example.net", extra=_message()))
    assert got == status
    assert out["accepted"] == []
    # bob was accepted at RCPT but did not get the message: the data reply says why
    code, enhanced, text = reply.split(" ", 2)
    assert out["rejected"] == {
        "bob@example.net": {
            "code": int(code),
            "enhanced": enhanced,
            "text": text,
            "transient": status == 2,
        }
    }
    assert out["error"]["type"] == "SMTPDataError"
    assert out["error"]["transient"] is (status == 2)


def test_it_exits_3_when_the_outcome_is_unknown(smtp_server: RunningServer) -> None:
    smtp_server.handler.close_at("after-data")
    run = run_cli(*_send(smtp_server, "bob@example.net", extra=_message()))
    # not 2: a script that retries on 2 must not resend what the server may have
    assert run.returncode == 3
    assert "may have it" in run.stderr
    assert run.stderr.startswith("Outcome unknown: ")
    status, out = run_json(*_send(smtp_server, "bob@example.net", extra=_message()))
    assert status == 3
    assert out["error"]["type"] == "SMTPOutcomeUnknown"


def test_it_sends_an_eml_file_byte_for_byte(smtp_server: RunningServer, tmp_path: Path) -> None:
    eml = tmp_path / "letter.eml"
    data = (
        b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: As is\r\n"
        b"Message-ID: <fixed.1@example.com>\r\nX-Custom: kept\r\n\r\n"
        b"first line\r\n.a line that starts with a dot\r\n..two dots\r\n"
        b"caf\xc3\xa9 in 8 bit\r\nlast line\r\n"
    )
    eml.write_bytes(data)
    status, out = run_json(*_send(smtp_server, "bob@example.net", extra=("--eml", str(eml))))
    assert status == 0, out
    assert out["message_id"] is None  # not built here: the file's own headers went out
    [received] = smtp_server.messages
    assert received.content == data
    assert "BODY=8BITMIME" in received.mail_options


def test_it_sends_an_eml_with_bare_line_feeds_as_crlf(
    smtp_server: RunningServer,
    tmp_path: Path,
) -> None:
    eml = tmp_path / "unix.eml"
    eml.write_bytes(b"Subject: LF only\n\nline one\nline two\n")
    run = run_cli(*_send(smtp_server, "bob@example.net", extra=("--eml", str(eml))))
    assert run.returncode == 0, run.stderr
    assert smtp_server.messages[0].content == b"Subject: LF only\r\n\r\nline one\r\nline two\r\n"


def test_it_attaches_files_intact(smtp_server: RunningServer, tmp_path: Path) -> None:
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 300 + b"\r\n.\r\n\n\r")
    pdf = tmp_path / "invoice.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n")
    text = tmp_path / "notes.txt"
    text.write_bytes(b"mixed\nline\r\nendings\n.dot\n")
    archive = tmp_path / "logs.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))
    run = run_cli(
        *_send(
            smtp_server,
            "bob@example.net",
            extra=(
                *_message("Files", "See attached.\n"),
                "--attach",
                str(binary),
                "--attach",
                str(pdf),
                "--attach",
                str(text),
                "--attach",
                str(archive),
            ),
        )
    )
    assert run.returncode == 0, run.stderr
    msg = _parse(smtp_server.messages[0].content)
    assert msg.get_body(("plain",)).get_content() == "See attached.\n"
    parts = {part.get_filename(): part for part in msg.iter_attachments()}
    assert set(parts) == {"blob.bin", "invoice.pdf", "notes.txt", "logs.tar.gz"}
    assert parts["blob.bin"].get_content_type() == "application/octet-stream"
    assert parts["invoice.pdf"].get_content_type() == "application/pdf"
    assert parts["notes.txt"].get_content_type() == "text/plain"
    assert parts["logs.tar.gz"].get_content_type() == "application/octet-stream"
    for path in (binary, pdf, text, archive):
        assert parts[path.name].get_payload(decode=True) == path.read_bytes(), path.name


def test_it_shows_the_transcript_when_asked(smtp_server: RunningServer) -> None:
    args = _send(smtp_server, "bob@example.net", extra=(*_message(), "--transcript"))
    status, out = run_json(*args)
    assert status == 0
    assert any(line.startswith("C: MAIL FROM:<alice@example.com>") for line in out["transcript"])
    assert "C: RCPT TO:<bob@example.net>" in out["transcript"]
    assert any(line.startswith("S: 250 2.0.0 Ok: queued") for line in out["transcript"])
    run = run_cli(*args)
    assert run.returncode == 0
    assert "C: RCPT TO:<bob@example.net>" in run.stdout
    assert run.stdout.index("C: QUIT") < run.stdout.index("Sent: the recipient accepted")


def test_it_asks_for_dsn_and_uses_bdat_when_offered(scripted_server_factory) -> None:
    mini = MiniSMTP(extensions=("PIPELINING", "CHUNKING", "DSN", "8BITMIME", "ENHANCEDSTATUSCODES"))
    server = scripted_server_factory(mini)
    status, out = run_json(
        *_send(
            server,
            "bob@example.net",
            extra=(
                *_message(),
                "--dsn-notify",
                "success,failure",
                "--dsn-ret",
                "hdrs",
                "--envid",
                "QQ314159",
            ),
        )
    )
    assert status == 0, out
    assert out["capabilities"]["chunking"] is True
    [received] = mini.messages
    assert received.via == "BDAT"
    assert "RET=HDRS" in received.mail_params and "ENVID=QQ314159" in received.mail_params
    assert "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE" in mini.commands
    assert _parse(received.content)["Subject"] == "Hello"


@pytest.mark.parametrize("address", ["bob@exämple.net", "bøb@example.net"])
def test_it_sends_to_international_addresses_with_smtputf8(
    smtp_server_factory,
    address: str,
) -> None:
    server = smtp_server_factory(enable_SMTPUTF8=True)
    status, out = run_json(*_send(server, address, extra=_message("Grüße", "Hallo!\n")))
    assert status == 0, out
    [received] = server.messages
    assert received.rcpt_tos == [address]
    assert "SMTPUTF8" in received.mail_options
    msg = _parse(received.content)
    assert msg["Subject"] == "Grüße"
    assert msg["To"] == address


def test_json_output_is_one_object_even_on_failure(smtp_server: RunningServer) -> None:
    smtp_server.handler.reply_at("mail", "421 4.3.2 Shutting down")
    run = run_cli(*_send(smtp_server, "bob@example.net", extra=(*_message(), "--json")))
    assert run.returncode == 2
    out = json.loads(run.stdout)
    assert set(out) >= {"accepted", "rejected", "error", "capabilities"}
    assert out["error"]["code"] == 421
