"""Bounce tracking: the delivery reports that arrive in an account's mailbox, matched to the
account's own messages, and what they say recorded per recipient.

Which mail: INBOX and the junk folder (SPECIAL-USE \\Junk, else the usual names), each read
from the last UID seen (``ImapSettings.cursors``: folder → [UIDVALIDITY, last UID]). The
first poll of a folder starts with the mail that arrived since the day before IMAP was set
up for the account (no report can be older than the mail Mailroom sent); a changed
UIDVALIDITY starts the folder over the same way.

Cheap: with nothing new, a poll costs one STATUS (UIDNEXT UIDVALIDITY) per folder, no
SELECT. New mail is looked at in two steps: a few header fields and the size of each new
message first, in batches, then the whole of only those that look like reports (a
multipart/report, a mailer-daemon or postmaster sender, a bounce's subject) and are at
most ``MAILROOM_REPORT_MAX_BYTES`` — a larger one is skipped with its reason recorded.

Matched only within the account that received the report: by the envelope id
(Original-Envelope-Id = ``OutboxMessage.envid``), else by the Message-ID the report
returns. A report for mail Mailroom did not send, or that another account sent, is left
alone: not flagged, not moved. A matched report is kept (``DeliveryReport``, its raw bytes),
its recipients take their state (``Recipient.remote``) — bounced for failed, delayed (the
recipient stays accepted; never over a bounce) or delivered — and a message with a bounced
recipient becomes ``bounced``. The report is then flagged \\Seen and, if the account says
so, moved to its reports folder. Nothing is ever deleted but that one moved copy.

At most once per report: a report already recorded (the same account, folder, UIDVALIDITY
and UID, or the same bytes) is not recorded again, so a poll cut short (a dropped
connection, a killed worker) is simply done again.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from imapclient import IMAPClient

from mailer import policy
from mailer.imap import reports, session
from mailer.models import DeliveryReport, ImapSettings, OutboxMessage, Recipient, SmtpAccount

log = logging.getLogger("mailer.imap")

__all__ = ["JUNK_NAMES", "Polled", "poll", "poll_due", "record"]

JUNK_NAMES = ("Junk", "Spam", "Junk Email", "Junk E-mail", "[Gmail]/Spam", "INBOX.Junk",
              "INBOX.Spam", "Bulk Mail")
_HEADERS = b"BODY.PEEK[HEADER.FIELDS (CONTENT-TYPE FROM SUBJECT)]"
_FETCHED = b"BODY[HEADER.FIELDS (CONTENT-TYPE FROM SUBJECT)]"
_BATCH = 500  # header fetches per round trip
_BODIES = 20  # whole reports per round trip
_SENDERS = re.compile(rb"^From:.*\b(mailer-daemon|postmaster|mail-daemon|mail delivery)",
                      re.IGNORECASE | re.MULTILINE)
_SUBJECTS = re.compile(
    rb"^Subject:.*(undeliver|deliver(y|ed) status|returned mail|failure notice|delivery fail|"
    rb"could not be delivered|not delivered|delayed mail|delivery (has been )?delayed|"
    rb"unzustellbar|non remis|mail delivery)", re.IGNORECASE | re.MULTILINE)
_REPORT_TYPE = re.compile(rb"^Content-Type:\s*multipart/report", re.IGNORECASE | re.MULTILINE)

# What a later report may change: a bounce or a delivery is final; a delay only warns.
_FINAL = (Recipient.Remote.BOUNCED, Recipient.Remote.DELIVERED)


@dataclass
class Polled:
    """One poll of one account: per folder, how many new messages, reports, matched."""

    new: dict[str, int] = field(default_factory=dict)
    reports: int = 0
    matched: int = 0
    ignored: int = 0  # reports not recorded: about mail this account did not send, or again
    skipped: list[str] = field(default_factory=list)  # in plain words (too large...)
    problem: str = ""


def poll_due(limit: int = 50) -> int:
    """Beat's pass: poll each account whose IMAP side tracks reports and whose turn has
    come, one worker per account (a lease). Returns how many were polled."""
    now = timezone.now()
    every = timedelta(seconds=float(settings.MAILROOM_REPORT_POLL_SECONDS))
    due = list(ImapSettings.objects.filter(
        Q(polled_at__isnull=True) | Q(polled_at__lte=now - every),
        Q(poll_claimed_until__isnull=True) | Q(poll_claimed_until__lt=now),
        track_reports=True,
    ).values_list("pk", "account_id")[:limit])
    polled = 0
    for pk, account_id in due:
        lease = now + timedelta(seconds=10 * float(settings.MAILROOM_IMAP_TIMEOUT))
        if ImapSettings.objects.filter(
            Q(poll_claimed_until__isnull=True) | Q(poll_claimed_until__lt=timezone.now()),
            pk=pk,
        ).update(poll_claimed_until=lease):
            poll(SmtpAccount.objects.select_related("imap").get(pk=account_id))
            polled += 1
    return polled


def poll(account: SmtpAccount) -> Polled:
    """Read what is new in the account's INBOX and junk folder; record the reports."""
    imap = ImapSettings.objects.get(account=account)
    account.imap = imap
    polled = Polled()
    try:
        with session.open_session(account) as client, session.errors(
                f"{imap.host}:{imap.port}"):
            for folder in _folders(client, imap):
                _poll_folder(client, account, imap, folder, polled)
    except session.ImapError as exc:
        polled.problem = str(exc) + (f" The server said: “{exc.server}”" if exc.server else "")
        log.warning("report poll account=%s: %s", account.pk, exc)
    detail = " ".join(filter(None, [polled.problem, *polled.skipped]))
    ImapSettings.objects.filter(pk=imap.pk).update(
        polled_at=timezone.now(), poll_claimed_until=None, poll_detail=detail[:5000])
    log.info("report poll account=%s new=%s reports=%s matched=%s ignored=%s", account.pk,
             polled.new, polled.reports, polled.matched, polled.ignored)
    return polled


def _folders(client: IMAPClient, imap: ImapSettings) -> list[str]:
    """INBOX and the junk folder: those read before (no LIST then), else found by LIST."""
    if imap.cursors:
        return list(imap.cursors)
    listed = client.list_folders()
    names = [name for _flags, _sep, name in listed]
    junk = next((name for flags, _sep, name in listed if b"\\Junk" in flags), None)
    if junk is None:
        lowered = {n.lower(): n for n in names}
        junk = next((lowered[j.lower()] for j in JUNK_NAMES if j.lower() in lowered), None)
    return ["INBOX"] + ([junk] if junk and junk.upper() != "INBOX" else [])


def _poll_folder(client: IMAPClient, account, imap: ImapSettings, folder: str,
                 polled: Polled) -> None:
    validity, last = (imap.cursors.get(folder) or [None, None])
    status = client.folder_status(folder, [b"UIDNEXT", b"UIDVALIDITY"])
    now_validity, uidnext = int(status[b"UIDVALIDITY"]), int(status[b"UIDNEXT"])
    if validity == now_validity and last is not None and uidnext <= last + 1:
        polled.new[folder] = 0
        return  # nothing new: this STATUS was the whole cost
    client.select_folder(folder)
    if validity == now_validity and last is not None:
        uids = [u for u in client.search(["UID", f"{last + 1}:*"]) if u > last]
    else:  # the first poll, or the folder's UIDs were renumbered
        since = (imap.enabled_at - timedelta(days=1)).date()
        uids = client.search(["SINCE", since])
    polled.new[folder] = len(uids)
    for start in range(0, len(uids), _BATCH):
        batch = sorted(uids)[start:start + _BATCH]
        _read_batch(client, account, imap, folder, now_validity, batch, polled)
        _advance(imap, folder, now_validity, batch[-1])
    if not uids:
        _advance(imap, folder, now_validity, max(uidnext - 1, last or 0))


def _advance(imap: ImapSettings, folder: str, validity: int, uid: int) -> None:
    imap.cursors = {**imap.cursors, folder: [validity, uid]}
    ImapSettings.objects.filter(pk=imap.pk).update(cursors=imap.cursors)


def _read_batch(client: IMAPClient, account, imap: ImapSettings, folder: str, validity: int,
                uids: list[int], polled: Polled) -> None:
    heads = client.fetch(uids, [_HEADERS, b"RFC822.SIZE"])
    limit = int(settings.MAILROOM_REPORT_MAX_BYTES)
    wanted = []
    for uid, data in heads.items():
        head = data.get(_FETCHED) or b""
        if not (_REPORT_TYPE.search(head) or _SENDERS.search(head) or _SUBJECTS.search(head)):
            continue
        if int(data.get(b"RFC822.SIZE") or 0) > limit:
            polled.skipped.append(
                f"A message in “{folder}” that looks like a delivery report was not read: it "
                f"is larger than {filesizeformat(limit)} (UID {uid}). Open it in your mail "
                "program; Mailroom leaves it where it is.")
            continue
        wanted.append(uid)
    for start in range(0, len(wanted), _BODIES):
        chunk = wanted[start:start + _BODIES]
        for uid, data in sorted(client.fetch(chunk, [b"BODY.PEEK[]"]).items()):
            raw = data.get(b"BODY[]") or b""
            found = record(account, raw, folder=folder, uidvalidity=validity, uid=uid)
            _count(found, raw, polled)
            if found is not None:
                _file(client, imap, folder, uid)


def _count(found: DeliveryReport | None, raw: bytes, polled: Polled) -> None:
    if found is not None:
        polled.reports += 1
        polled.matched += 1
    elif reports.parse(raw) is not None:
        polled.reports += 1
        polled.ignored += 1


def _file(client: IMAPClient, imap: ImapSettings, folder: str, uid: int) -> None:
    """A matched report: flagged \\Seen, and moved to the reports folder if one is set."""
    client.add_flags([uid], [b"\\Seen"], silent=True)
    target = imap.reports_folder
    if not target or target == folder:
        return
    if not client.folder_exists(target):
        client.create_folder(target)
    if client.has_capability("MOVE"):
        client.move([uid], target)
        return
    client.copy([uid], target)
    client.add_flags([uid], [b"\\Deleted"], silent=True)
    client.uid_expunge([uid])  # this UID only (UIDPLUS), never anything else flagged


def record(account: SmtpAccount, raw: bytes, *, folder: str, uidvalidity: int,
           uid: int) -> DeliveryReport | None:
    """Match the report in ``raw`` to one of ``account``'s messages and record it, in one
    transaction. None when it is no report, is about mail this account did not send, or
    was recorded before."""
    found = reports.parse(raw)
    if found is None or not found.recipients:
        return None
    message = _match(account, found)
    if message is None:
        return None
    digest = hashlib.sha256(raw).hexdigest()
    if DeliveryReport.objects.filter(Q(digest=digest) | Q(folder=folder, uidvalidity=uidvalidity,
                                                         uid=uid), account=account).exists():
        return None
    try:
        with transaction.atomic():
            report = _save(account, message, found, raw, digest, folder, uidvalidity, uid)
            _mark(message, found, report)
    except IntegrityError:  # another worker recorded it a moment ago
        return None
    log.info("report account=%s message=%s kind=%s recipients=%s", account.pk, message.pk,
             found.kind, [(r.address, r.state) for r in found.recipients])
    return report


def _match(account: SmtpAccount, found: reports.Report) -> OutboxMessage | None:
    """Only the account's own messages: a forged envelope id of another user's message
    finds nothing here."""
    mine = OutboxMessage.objects.filter(account=account)
    if found.envid:
        by_envid = mine.filter(envid=found.envid).first()
        if by_envid is not None:
            return by_envid
    if found.message_ids:
        return mine.filter(message_id__in=found.message_ids).order_by("-pk").first()
    return None


def _save(account, message, found: reports.Report, raw: bytes, digest: str, folder: str,
          uidvalidity: int, uid: int) -> DeliveryReport:
    report = DeliveryReport(account=account, message=message, kind=found.kind, folder=folder,
                            uidvalidity=uidvalidity, uid=uid, digest=digest, size=len(raw),
                            subject=found.subject[:998], reporting_mta=found.reporting_mta[:255],
                            arrived_at=found.arrived_at)
    report.raw.save("report.eml", ContentFile(raw), save=False)
    report.save()
    return report


def _took(message: OutboxMessage, recipient: Recipient) -> bool:
    """Whether the account's server took the message for this recipient: accepted, or —
    when the outcome was unknown — anything but refused (the report proves it had it)."""
    if recipient.status == Recipient.Status.ACCEPTED:
        return True
    return (message.status == OutboxMessage.Status.UNKNOWN
            and recipient.status != Recipient.Status.FAILED)


def _mark(message: OutboxMessage, found: reports.Report, report: DeliveryReport) -> None:
    now = timezone.now()
    recipients = {r.address.lower(): r for r in message.recipients.all()}
    bounced = False
    for said in found.recipients:
        recipient = recipients.get(said.address.lower())
        if recipient is None or not _took(message, recipient):
            continue  # not one the server took (a first-hop failure says it all already)
        if recipient.remote in _FINAL and said.state == Recipient.Remote.DELAYED:
            continue  # a late warning never undoes a bounce or a delivery
        Recipient.objects.filter(pk=recipient.pk).update(
            remote=said.state, remote_mta=said.remote_mta, remote_status=said.status,
            remote_code=said.code, remote_text=said.text, remote_at=now, report=report,
            remote_reason=policy.report_reason(said.state, said.status))
        bounced = bounced or said.state == Recipient.Remote.BOUNCED
    if bounced:
        OutboxMessage.objects.filter(
            pk=message.pk, status__in=[OutboxMessage.Status.SENT, OutboxMessage.Status.UNKNOWN],
        ).update(status=OutboxMessage.Status.BOUNCED)
