"""The command-line tool: ``python -m mailer.smtp check|send`` (swaks-like, no Django).

``check`` connects, negotiates TLS, authenticates, prints what the server offers and QUITs.
``send`` sends one message: an ``.eml`` file byte for byte, or one built here from
``--subject``/``--body``/``--attach`` with the stdlib ``email`` package.

Exit status: 0 every recipient accepted; 1 some accepted, some refused; 2 nothing delivered,
transient failure (try again later); 3 nothing delivered, permanent failure (or the outcome
is unknown, see below); 64 bad usage. Passwords come only from an environment variable or a
file: anything on the command line ends up in shell history and in every process list.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from collections.abc import Sequence
from email import policy as email_policy
from email import utils as email_utils
from email.message import EmailMessage
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypedDict

from mailer.smtp import Capabilities, SendResult, SMTPClient, errors

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_TRANSIENT = 2
EXIT_PERMANENT = 3
EXIT_USAGE = 64  # EX_USAGE from sysexits.h

DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
AUTH_MECHANISMS = ("auto", "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER")
DSN_NOTIFY_VALUES = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
_NOT_GIVEN = object()


class UsageError(Exception):
    """Bad command-line usage found after parsing; exits with status 64."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit with 64 (EX_USAGE), not argparse's 2,
    which would read as "transient failure" here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def _mechanism(text: str) -> str:
    for name in AUTH_MECHANISMS:
        if text.upper() == name.upper():
            return name
    raise argparse.ArgumentTypeError(
        f"unknown mechanism {text!r}; choose one of {', '.join(AUTH_MECHANISMS)}"
    )


def _dsn_notify(text: str) -> list[str]:
    values = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [value for value in values if value not in DSN_NOTIFY_VALUES]
    if not values or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NEVER, or a comma-separated list of SUCCESS, FAILURE, DELAY"
        )
    if "NEVER" in values and len(values) > 1:
        raise argparse.ArgumentTypeError("NEVER cannot be combined with other DSN conditions")
    return values


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False, allow_abbrev=False)
    _add_connection_arguments(common.add_argument_group("connection"))
    _add_auth_arguments(common.add_argument_group("authentication"))
    out = common.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument(
        "--transcript",
        action="store_true",
        help="show the SMTP dialogue (secrets are always redacted)",
    )

    parser = _Parser(
        prog="python -m mailer.smtp",
        description="Check an SMTP account, or send one message through it.",
        epilog="Exit status: 0 all recipients accepted; 1 some refused; 2 nothing delivered, "
        "try again later; 3 nothing delivered, permanent failure; 64 bad usage.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "check",
        parents=[common],
        allow_abbrev=False,
        help="connect, negotiate TLS, log in, print the capabilities, QUIT",
        description="Connect, negotiate TLS, log in, print the server's capabilities, QUIT.",
    )
    send = commands.add_parser(
        "send",
        parents=[common],
        allow_abbrev=False,
        help="send one message",
        description="Send one message: an .eml file as it is, or one built from "
        "--subject, --body and --attach.",
    )
    _add_send_arguments(send)
    return parser


def _add_connection_arguments(conn: argparse._ArgumentGroup) -> None:
    conn.add_argument(
        "--server",
        required=True,
        metavar="HOST:PORT",
        help="the SMTP server; the port defaults to 587 (starttls), 465 (tls) or 25 (none); "
        "write IPv6 addresses as [::1]:25",
    )
    conn.add_argument(
        "--security",
        choices=sorted(DEFAULT_PORTS),
        default="starttls",
        help="starttls (default): upgrade with STARTTLS, never continue in plaintext; "
        "tls: TLS from the first byte (port 465); none: no encryption",
    )
    conn.add_argument(
        "--cafile",
        metavar="PEM",
        type=Path,
        help="trust the CA certificates in this PEM file (self-hosted servers)",
    )
    conn.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (testing only)",
    )
    conn.add_argument(
        "--local-name",
        metavar="NAME",
        help="the name to send in EHLO/HELO (default: this machine's name)",
    )
    conn.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="connect and per-command timeout (default 30 s and 60 s)",
    )
    conn.add_argument("--connect-timeout", type=_positive_seconds, metavar="SECONDS")
    conn.add_argument("--command-timeout", type=_positive_seconds, metavar="SECONDS")
    conn.add_argument(
        "--data-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="timeout for sending the whole message (default 600 s)",
    )


def _add_auth_arguments(auth: argparse._ArgumentGroup) -> None:
    auth.add_argument("--user", metavar="U", help="log in as this user")
    source = auth.add_mutually_exclusive_group()
    source.add_argument(
        "--password-env",
        metavar="VAR",
        help="read the password (or OAuth2 token) from environment variable VAR",
    )
    source.add_argument(
        "--password-file",
        metavar="F",
        type=Path,
        help="read the password (or OAuth2 token) from file F (one line)",
    )
    # Present only to refuse it in plain words without echoing the value back.
    source.add_argument("--password", nargs="?", default=_NOT_GIVEN, help=argparse.SUPPRESS)
    auth.add_argument(
        "--auth",
        type=_mechanism,
        default="auto",
        metavar="MECH",
        help=f"one of {', '.join(AUTH_MECHANISMS)} (default auto: the best "
        "mechanism the server offers)",
    )
    auth.add_argument(
        "--allow-plaintext-auth",
        action="store_true",
        help="allow logging in over an unencrypted connection (--security none)",
    )


def _add_send_arguments(send: argparse.ArgumentParser) -> None:
    envelope = send.add_argument_group("envelope")
    envelope.add_argument(
        "--from",
        dest="sender",
        required=True,
        metavar="ADDR",
        help="the envelope sender (and From: of a built message)",
    )
    envelope.add_argument(
        "--to",
        dest="recipients",
        action="append",
        required=True,
        metavar="ADDR",
        help="a recipient; repeat for more",
    )
    envelope.add_argument(
        "--dsn-notify",
        type=_dsn_notify,
        metavar="WHEN",
        help="ask for delivery status notifications (RFC 3461): NEVER, or "
        "a comma-separated list of SUCCESS, FAILURE, DELAY",
    )
    envelope.add_argument(
        "--dsn-ret",
        choices=("FULL", "HDRS"),
        type=str.upper,
        help="what a DSN returns: the full message or the headers only",
    )
    envelope.add_argument("--envid", metavar="ID", help="an envelope id for DSNs")
    content = send.add_argument_group("message (either --eml, or --subject and --body)")
    content.add_argument(
        "--eml",
        type=Path,
        metavar="FILE",
        help="send this file byte for byte (line endings become CRLF)",
    )
    content.add_argument("--subject", metavar="S")
    content.add_argument("--body", metavar="TEXT", help="the plain-text body")
    content.add_argument(
        "--attach",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="attach a file (type guessed from its name); repeat for more",
    )


# --- turning arguments into client settings -------------------------------------------


def parse_server(text: str, security: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    port_text = ""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise UsageError(f"--server {text!r}: write an IPv6 address as [::1]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:  # a name, or a bare IPv6 address without a port
        host = text
    if not host:
        raise UsageError(f"--server {text!r} names no host")
    if not port_text:
        return host, DEFAULT_PORTS[security]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--server {text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def read_secret(args: argparse.Namespace) -> str | None:
    if args.password is not _NOT_GIVEN:
        raise UsageError(
            "passwords are not taken on the command line, where shell history and process "
            "lists would keep them; use --password-env VAR or --password-file F"
        )
    if args.password_env is not None:
        secret = os.environ.get(args.password_env)
        if not secret:
            raise UsageError(
                f"the environment variable {args.password_env} is not set or empty; put the "
                "password in it, or use --password-file F"
            )
    elif args.password_file is not None:
        try:
            secret = args.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
            raise UsageError(
                f"cannot read the password file {args.password_file}: {reason}"
            ) from None
        secret = secret.removesuffix("\n").removesuffix("\r")
        if not secret:
            raise UsageError(f"the password file {args.password_file} is empty")
    else:
        secret = None
    if secret is not None and not args.user:
        raise UsageError("a password was given but no --user to log in as")
    if args.user and secret is None:
        raise UsageError(
            f"--user {args.user} needs a password: use --password-env VAR or --password-file F"
        )
    return secret


class _Timeouts(TypedDict, total=False):
    """The timeouts given on the command line; the others keep SMTPClient's defaults."""

    connect_timeout: float
    command_timeout: float
    data_timeout: float


def client_from_args(args: argparse.Namespace) -> SMTPClient:
    if args.insecure and args.cafile:
        raise UsageError("--cafile and --insecure contradict each other; give one of them")
    if args.cafile and not args.cafile.is_file():
        raise UsageError(f"--cafile {args.cafile}: no such file")
    host, port = parse_server(args.server, args.security)
    secret = read_secret(args)
    timeouts: _Timeouts = {}
    if args.timeout:
        timeouts["connect_timeout"] = timeouts["command_timeout"] = args.timeout
    if args.connect_timeout:
        timeouts["connect_timeout"] = args.connect_timeout
    if args.command_timeout:
        timeouts["command_timeout"] = args.command_timeout
    if args.data_timeout:
        timeouts["data_timeout"] = args.data_timeout
    try:
        return SMTPClient(
            host,
            port,
            security=args.security,
            local_hostname=args.local_name,
            username=args.user,
            secret=secret,
            auth_mechanism=args.auth,
            allow_plaintext_auth=args.allow_plaintext_auth,
            verify=not args.insecure,
            cafile=str(args.cafile) if args.cafile else None,
            transcript=args.transcript,
            **timeouts,
        )
    except errors.SMTPCommandArgumentError as exc:  # e.g. a --local-name with a space
        raise UsageError(str(exc)) from None


# --- the message -----------------------------------------------------------------------


def _has_control_characters(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def build_message(
    sender: str, recipients: Sequence[str], subject: str, body: str, attachments: Sequence[Path]
) -> EmailMessage:
    """A MIME message with Date and Message-ID, the body as text/plain and each file as an
    attachment whose type is guessed from its name."""
    utf8 = not all(address.isascii() for address in (sender, *recipients))
    msg = EmailMessage(policy=email_policy.SMTPUTF8 if utf8 else email_policy.SMTP)
    try:
        msg["From"] = sender
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = subject
    except ValueError as exc:  # CR or LF in a header value: refused by the email package
        raise UsageError(f"cannot build the message: {exc}") from None
    msg["Date"] = email_utils.formatdate(localtime=True)
    domain = sender.rpartition("@")[2] if "@" in sender else "localhost"
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = "localhost"
    msg["Message-ID"] = email_utils.make_msgid(domain=domain)
    msg.set_content(body)
    for path in attachments:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read the attachment {path}: {exc.strerror}") from None
        ctype, encoding = mimetypes.guess_type(path.name)
        if ctype is None or encoding is not None:  # unknown, or compressed (.gz): opaque bytes
            ctype = "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    return msg


def message_from_args(args: argparse.Namespace) -> tuple[bytes | BinaryIO, int, str | None]:
    """The message to send, its size, and its Message-ID when we built it."""
    for address in (args.sender, *args.recipients):
        if not address or _has_control_characters(address):
            raise UsageError(
                f"{address!r} is not a usable address (empty, or has control "
                "characters or line breaks)"
            )
    if args.eml is not None:
        if args.subject is not None or args.body is not None or args.attach:
            raise UsageError(
                "--eml sends a file as it is; it cannot be combined with "
                "--subject, --body or --attach"
            )
        try:
            handle = args.eml.open("rb")
        except OSError as exc:
            raise UsageError(f"cannot read --eml {args.eml}: {exc.strerror}") from None
        return handle, os.fstat(handle.fileno()).st_size, None
    if args.subject is None or args.body is None:
        raise UsageError("give the message: either --eml FILE, or --subject S and --body TEXT")
    msg = build_message(args.sender, args.recipients, args.subject, args.body, args.attach)
    data = msg.as_bytes()
    return data, len(data), msg["Message-ID"]


# --- running and reporting ---------------------------------------------------------------

# The first matching class gives the "what to do" line (subclasses before their bases).
_HINTS: list[tuple[type[errors.SMTPError], str]] = [
    (
        errors.SMTPCertificateError,
        "If the server uses a certificate from a private CA, pass that CA with --cafile PEM; "
        "--insecure turns verification off (for testing only).",
    ),
    (
        errors.SMTPTLSError,
        "Check that --security matches the port: tls for 465, starttls for 587 or 25.",
    ),
    (
        errors.SMTPStartTLSNotSupported,
        "The server does not offer STARTTLS. Use --security tls if it expects TLS from the "
        "start (port 465), or --security none only on a network you trust.",
    ),
    (
        errors.SMTPPlaintextAuthRefused,
        "Use --security starttls or tls; add --allow-plaintext-auth only on a network you trust.",
    ),
    (
        errors.SMTPAuthNotSupported,
        "Choose one of the mechanisms the server offers with --auth, or leave --auth at auto.",
    ),
    (
        errors.SMTPAuthenticationError,
        "Check the user name and the password or token (some providers need an app password).",
    ),
    (
        errors.SMTPConnectError,
        "Check --server (host name and port), and that the server is running and can be "
        "reached from this machine.",
    ),
    (
        errors.SMTPTimeoutError,
        "The server did not answer in time; try again later, or raise --timeout.",
    ),
    (errors.SMTPServerDisconnected, "The server hung up; try again later."),
    (errors.SMTPGreetingError, "The server turned the connection away; try again later."),
    (
        errors.SMTPSenderRefused,
        "Check --from: many servers accept only the account's own address as sender.",
    ),
    (errors.SMTPRecipientsRefused, "Check the recipient addresses in the server's replies."),
    (errors.SMTPMessageTooLarge, "Make the message smaller than the server's limit."),
    (
        errors.SMTPNotSupported,
        "The message needs an extension the server lacks (SMTPUTF8 for non-ASCII addresses, "
        "8BITMIME for 8-bit bodies); use ASCII addresses or another server.",
    ),
    (errors.SMTPDataError, "The server refused the message; its reply says why."),
    (
        errors.SMTPProtocolError,
        "The replies did not follow SMTP; check that --server names an SMTP server.",
    ),
    (
        errors.SMTPOutcomeUnknown,
        "The connection was lost after the whole message was sent, so the server may have "
        "it. Check with a recipient before sending it again.",
    ),
    (
        errors.SMTPCommandArgumentError,
        "Remove line breaks and control characters from addresses and names.",
    ),
]


def _hint(exc: errors.SMTPError) -> str:
    for cls, text in _HINTS:
        if isinstance(exc, cls):
            if errors.is_transient(exc) and cls in (
                errors.SMTPAuthenticationError,
                errors.SMTPRecipientsRefused,
                errors.SMTPSenderRefused,
                errors.SMTPDataError,
            ):
                return "The server refused for now; try again later."
            return text
    return "Try again later." if errors.is_transient(exc) else ""


def _error_dict(exc: errors.SMTPError) -> dict[str, Any]:
    reply = exc.reply
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "hint": _hint(exc),
        "phase": exc.phase,
        "transient": errors.is_transient(exc),
        "code": reply.code if reply else None,
        "enhanced": reply.enhanced if reply else None,
        "text": reply.text if reply else None,
    }


def _reply_dict(reply: Any, transient: bool) -> dict[str, Any]:
    return {
        "code": reply.code,
        "enhanced": reply.enhanced,
        "text": reply.text,
        "transient": transient,
    }


def _outcome(result: SendResult | None, exc: errors.SMTPError | None) -> dict[str, Any]:
    """``accepted`` and ``rejected`` as the issue defines them. When the message itself
    was refused after some RCPTs were accepted, those recipients did not get it either:
    they are listed as rejected with the server's reply to the data."""
    accepted: list[str] = []
    rejected: dict[str, dict[str, Any]] = {}
    if result is None:
        return {"accepted": accepted, "rejected": rejected}
    failed_data = exc is not None and exc.reply is not None
    for rcpt in result.recipients:
        if not rcpt.accepted:
            rejected[rcpt.address] = _reply_dict(rcpt.reply, rcpt.transient)
        elif exc is None:
            accepted.append(rcpt.address)
        elif failed_data:
            rejected[rcpt.address] = _reply_dict(exc.reply, errors.is_transient(exc))
    return {"accepted": accepted, "rejected": rejected}


def _describe_connection(args: argparse.Namespace, client: SMTPClient) -> str:
    how = {"none": "without encryption", "starttls": "with STARTTLS", "tls": "over TLS"}[
        args.security
    ]
    if args.security != "none":
        how += (
            " (certificate NOT verified: --insecure)"
            if args.insecure
            else f" (certificate verified{' against ' + str(args.cafile) if args.cafile else ''})"
        )
    text = f"Connected to {client.host}:{client.port} {how}"
    if args.user:
        text += f", logged in as {args.user} with {client.auth_mechanism_used}"
    return text + "."


def _capability_lines(caps: Capabilities) -> list[str]:
    if not caps.esmtp:
        return ["The server speaks only HELO: no ESMTP extensions."]
    lines = ["The server offers:"]
    for keyword, params in caps.extensions.items():
        lines.append(f"  {keyword} {params}".rstrip())
    return lines


def _print_human(
    args: argparse.Namespace,
    report: dict[str, Any],
    client: SMTPClient,
    exc: errors.SMTPError | None,
) -> None:
    out = sys.stdout
    if args.transcript and client.transcript:
        print("\n".join(client.transcript), file=out)
        print(file=out)
    if args.command == "check":
        if exc is None:
            # connect() returned, so the server's EHLO (or HELO) answer is known.
            assert client.capabilities is not None
            print(_describe_connection(args, client), file=out)
            print("\n".join(_capability_lines(client.capabilities)), file=out)
            print("The account works.", file=out)
    else:
        accepted, rejected = report["accepted"], report["rejected"]
        total = len(args.recipients)
        if exc is None and not rejected:
            print(
                f"Sent: {'the recipient' if total == 1 else f'all {total} recipients'} "
                "accepted the message.",
                file=out,
            )
        elif exc is None:
            print(
                f"Partly sent: {len(accepted)} of {total} recipients accepted, "
                f"{len(rejected)} refused.",
                file=out,
            )
        for address in accepted:
            print(f"  accepted  {address}", file=out)
        for address, why in rejected.items():
            kind = "temporary" if why["transient"] else "permanent"
            enhanced = f" {why['enhanced']}" if why["enhanced"] else ""
            print(
                f"  refused   {address}: {why['code']}{enhanced} {why['text']} ({kind})", file=out
            )
        if report.get("data_reply"):
            print(f"The server's final reply: {report['data_reply']}", file=out)
        if report.get("message_id") and exc is None:
            print(f"Message-ID: {report['message_id']}", file=out)
    if exc is not None:
        if args.command == "check":
            verb = "Check failed"
        elif isinstance(exc, errors.SMTPOutcomeUnknown):
            verb = "Outcome unknown"  # the server may have the message: not "not sent"
        else:
            verb = "Not sent"
        print(f"{verb}: {exc}", file=sys.stderr)
        hint = _hint(exc)
        if hint:
            print(f"What to do: {hint}", file=sys.stderr)


def _exit_code(
    args: argparse.Namespace, report: dict[str, Any], exc: errors.SMTPError | None
) -> int:
    if exc is not None:
        # SMTPOutcomeUnknown is not transient: a script that retries on 2 must not resend
        # a message the server may already have.
        return EXIT_TRANSIENT if errors.is_transient(exc) else EXIT_PERMANENT
    if args.command == "send" and report["rejected"]:
        return EXIT_PARTIAL
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    message: bytes | BinaryIO = b""
    size = 0
    message_id = None
    if args.command == "send":
        message, size, message_id = message_from_args(args)
    result: SendResult | None = None
    exc: errors.SMTPError | None = None
    try:
        client.connect()
        if args.command == "send":
            result = client.send(
                args.sender,
                args.recipients,
                message,
                dsn_notify=args.dsn_notify,
                dsn_ret=args.dsn_ret,
                envid=args.envid,
                size_hint=size,
            )
        client.quit()
    except errors.SMTPError as error:
        exc = error
        result = getattr(error, "result", None)
    finally:
        client.close()
        if not isinstance(message, bytes):
            message.close()
    report: dict[str, Any] = {}
    if args.command == "send":
        report.update(_outcome(result, exc))
        report["data_reply"] = str(result.data_reply) if result and result.data_reply else None
        report["message_id"] = message_id
    report["error"] = _error_dict(exc) if exc is not None else None
    caps = client.capabilities
    report["capabilities"] = caps.to_dict() if caps is not None else None
    if args.transcript:
        report["transcript"] = list(client.transcript)
    code = _exit_code(args, report, exc)
    if args.json:
        report["exit_status"] = code
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _print_human(args, report, client, exc)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
