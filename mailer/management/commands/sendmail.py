"""``manage.py sendmail``: queue a message through one of a user's accounts and print its id.

It builds a draft and sends it with ``mailer.services.send_draft`` — the same path as the
web UI — so the message is validated, frozen and delivered by the workers exactly like a
message sent from the browser. It goes at once unless ``--hold S`` or ``--at`` is given.
"""

from __future__ import annotations

import io
import os
import sys
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from mailer import attachments, services
from mailer.models import Attachment, Draft, SmtpAccount

from ._common import get_account, get_user, service_errors


class Command(BaseCommand):
    help = "Queue a message through one of a user's accounts; prints the message id."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="the sender's username")
        parser.add_argument(
            "--account", help="the account's label (default: the user's default account)"
        )
        parser.add_argument(
            "--to", action="append", default=[], metavar="ADDRESS", help="a recipient (repeatable)"
        )
        parser.add_argument(
            "--cc",
            action="append",
            default=[],
            metavar="ADDRESS",
            help="a Cc recipient (repeatable)",
        )
        parser.add_argument(
            "--bcc",
            action="append",
            default=[],
            metavar="ADDRESS",
            help="a Bcc recipient (repeatable; never shown in the headers)",
        )
        parser.add_argument("--reply-to", default="", metavar="ADDRESS", help="a Reply-To address")
        parser.add_argument("--subject", required=True)
        body = parser.add_mutually_exclusive_group(required=True)
        body.add_argument("--body", help="the text body")
        body.add_argument(
            "--body-file",
            metavar="FILE",
            help="read the text body from FILE (- for standard input)",
        )
        parser.add_argument("--html-file", metavar="FILE", help="an HTML alternative body")
        parser.add_argument(
            "--attach",
            action="append",
            default=[],
            metavar="FILE",
            help="attach a file (repeatable)",
        )
        parser.add_argument(
            "--at",
            metavar="ISO-8601",
            help="send later, e.g. 2026-12-01T09:00 (local time, TIME_ZONE) or with an offset",
        )
        parser.add_argument(
            "--hold",
            type=int,
            default=0,
            metavar="S",
            help="keep it S seconds before sending, so it can still be taken back (default 0)",
        )
        parser.add_argument(
            "--delivery-report",
            action="store_true",
            help="ask the recipients' servers to report delivery too, not only failures and "
            "delays (where the account's server offers DSN)",
        )

    def handle(self, *args, **opts):
        _refuse_undecodable(opts)
        user = get_user(opts["user"])
        account = (
            get_account(opts["account"], opts["user"])
            if opts["account"]
            else _default_account(user)
        )
        if not (opts["to"] or opts["cc"] or opts["bcc"]):
            raise CommandError("Add at least one recipient with --to, --cc or --bcc.")
        if opts["hold"] < 0:
            raise CommandError("--hold is a number of seconds, 0 or more.")
        send_at = _parse_when(opts["at"]) if opts["at"] else None
        body = opts["body"] if opts["body"] is not None else _read_text(opts["body_file"], "body")
        html = _read_text(opts["html_file"], "HTML") if opts["html_file"] else ""
        files = [_read_attachment(path) for path in opts["attach"]]

        saved: list[Attachment] = []
        try:
            with service_errors(), transaction.atomic():
                draft = Draft.objects.create(
                    owner=user,
                    account=account,
                    to=", ".join(opts["to"]),
                    cc=", ".join(opts["cc"]),
                    bcc=", ".join(opts["bcc"]),
                    reply_to=opts["reply_to"],
                    subject=opts["subject"],
                    body_text=body,
                    body_html=html,
                    delivery_report=opts["delivery_report"],
                )
                for name, data in files:
                    saved.append(attachments.add(draft, name=name, content=io.BytesIO(data)))
                message = services.send_draft(
                    user, draft, hold_seconds=opts["hold"], send_at=send_at
                )
        except BaseException:
            # The rows were rolled back; the stored files were not.
            for att in saved:
                att.file.storage.delete(att.file.name)
            raise
        self.stdout.write(str(message.pk))


_TEXT_OPTIONS = ("user", "account", "to", "cc", "bcc", "reply_to", "subject", "body", "at")


def _refuse_undecodable(opts: dict) -> None:
    """An argument that is not valid UTF-8 reaches Python with lone surrogates in place of
    its bad bytes (PEP 383); they cannot be stored or sent, so say which option it was
    instead of failing later with a UnicodeEncodeError. (File names are another matter:
    ``--attach`` reads them as Latin-1, see ``_read_attachment``.)"""
    for name in _TEXT_OPTIONS:
        values = opts.get(name)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value):
                raise CommandError(
                    f"--{name.replace('_', '-')} is not valid UTF-8 text (a byte that is not "
                    "part of any UTF-8 character). Check the terminal's or the script's "
                    "encoding and type it again."
                )


def _default_account(user) -> SmtpAccount:
    accounts = list(SmtpAccount.objects.filter(owner=user).order_by("-is_default", "label")[:2])
    if not accounts:
        raise CommandError(
            f"{user.get_username()} has no account to send from. Add one with "
            f"`python manage.py smtpaccount add`."
        )
    if not accounts[0].is_default and len(accounts) > 1:
        raise CommandError(
            f"{user.get_username()} has several accounts and none is the default: "
            f"say which with --account LABEL (see `python manage.py smtpaccount list`)."
        )
    return accounts[0]


def _parse_when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"--at {text!r} is not an ISO-8601 time. Write it like 2026-12-01T09:00 "
            f"(local time) or 2026-12-01T09:00+01:00."
        ) from None
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    if when <= timezone.now():
        raise CommandError(
            f"--at {text} is in the past. Leave --at out to send now, or give a later time."
        )
    return when


def _read_text(path: str, what: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
        raise CommandError(f"Cannot read the {what} file {path}: {reason}.") from exc


def _read_attachment(path: str) -> tuple[str, bytes]:
    p = Path(path)
    limit = settings.MAILROOM_MAX_ATTACHMENT_BYTES
    try:
        size = p.stat().st_size
        if size > limit:
            raise CommandError(
                f"The file {path} is {size / 1e6:.1f} MB; attachments may be at most "
                f"{limit / 1e6:.1f} MB (MAILROOM_MAX_ATTACHMENT_BYTES). Send a smaller file "
                f"or a link to it."
            )
        return _file_name(p), p.read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot attach {path}: {exc.strerror or exc}.") from exc


def _file_name(path: Path) -> str:
    """The name to show for an attached file, always a real (UTF-8 encodable) string."""
    raw = os.fsencode(path.name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Not UTF-8 (an old Latin-1 name, say): Path.name holds lone surrogates, which no
        # database or header takes. Read it as Latin-1 and drop what cannot be shown.
        return "".join(c if c.isprintable() else "_" for c in raw.decode("latin-1"))
