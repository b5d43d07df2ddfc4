"""Bounce tracking: the delivery reports that arrive in an account's mailbox, matched to the
account's own messages, and what they say recorded per recipient.

Which mail: INBOX and the junk folder (SPECIAL-USE \\Junk, else the usual names), each read
from the last UID seen (``ImapSettings.cursors``: folder → [UIDVALIDITY, last UID]). The
first poll of a folder starts with the mail that arrived since the day before IMAP was set
up for the account (no report can be older than the mail Mailroom sent); a changed
UIDVALIDITY starts the folder over the same way.

Cheap: with nothing new, a poll costs one STATUS (UIDNEXT UIDVALIDITY) per folder, no
SELECT. With new mail, the server itself picks what looks like a report (one SEARCH: a
multipart/report, a mailer-daemon or postmaster sender, a bounce's subject), so ordinary
mail is never fetched; of those, only the ones of at most ``MAILROOM_REPORT_MAX_BYTES``
are fetched whole, 20 per round trip and recorded 20 per transaction — a larger one is
skipped with its reason recorded.

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

__all__ = ["JUNK_NAMES", "Found", "Polled", "any_due", "poll", "poll_due", "record",
           "record_many"]

JUNK_NAMES = ("Junk", "Spam", "Junk Email", "Junk E-mail", "[Gmail]/Spam", "INBOX.Junk",
              "INBOX.Spam", "Bulk Mail")
_BATCH = 200  # likely reports per size check (one round trip)
_BODIES = 20  # whole reports per round trip, recorded in one transaction


def _any_of(keys: list) -> list:
    return keys[0] if len(keys) == 1 else ["OR", keys[0], _any_of(keys[1:])]


#: What a delivery report or bounce looks like, as an IMAP SEARCH (RFC 3501 §6.4.4): the
#: server answers it from its index, so ordinary mail is never fetched.
_LIKELY = _any_of([
    ["HEADER", "Content-Type", "multipart/report"],
    *(["FROM", who] for who in ("mailer-daemon", "postmaster", "mail-daemon",
                                "Mail Delivery")),
    *(["SUBJECT", words] for words in (
        "undeliver", "delivery status", "returned mail", "failure notice", "delivery fail",
        "not delivered", "could not be delivered", "delayed", "unzustellbar", "non remis")),
])

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


def _due():
    now = timezone.now()
    every = timedelta(seconds=float(settings.MAILROOM_REPORT_POLL_SECONDS))
    return ImapSettings.objects.filter(
        Q(polled_at__isnull=True) | Q(polled_at__lte=now - every),
        Q(poll_claimed_until__isnull=True) | Q(poll_claimed_until__lt=now),
        track_reports=True,
    )


def any_due() -> bool:
    """Whether a mailbox's turn has come (the sweep asks, ``mailer.tasks.sweep``)."""
    return _due().exists()


def poll_due(limit: int = 50) -> int:
    """Beat's pass: poll each account whose IMAP side tracks reports and whose turn has
    come, one worker per account (a lease). Returns how many were polled."""
    now = timezone.now()
    due = list(_due().values_list("pk", "account_id")[:limit])
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
        where = ["UID", f"{last + 1}:*"]
    else:  # the first poll, or the folder's UIDs were renumbered
        where = ["SINCE", (imap.enabled_at - timedelta(days=1)).date()]
    last = last if validity == now_validity else None
    new = [u for u in client.search(where) if last is None or u > last]
    polled.new[folder] = len(new)
    # The server picks the likely reports (one SEARCH): nothing else is fetched at all.
    likely = sorted(u for u in client.search([*where, _LIKELY]) if last is None or u > last)
    for start in range(0, len(likely), _BATCH):
        batch = likely[start:start + _BATCH]
        _read_batch(client, account, imap, folder, now_validity, batch, polled)
        _advance(imap, folder, now_validity, batch[-1])
    _advance(imap, folder, now_validity, max([*new, uidnext - 1, last or 0]))


def _advance(imap: ImapSettings, folder: str, validity: int, uid: int) -> None:
    imap.cursors = {**imap.cursors, folder: [validity, uid]}
    ImapSettings.objects.filter(pk=imap.pk).update(cursors=imap.cursors)


def _read_batch(client: IMAPClient, account, imap: ImapSettings, folder: str, validity: int,
                uids: list[int], polled: Polled) -> None:
    sizes = client.fetch(uids, [b"RFC822.SIZE"])
    limit = int(settings.MAILROOM_REPORT_MAX_BYTES)
    wanted = []
    for uid, data in sorted(sizes.items()):
        if int(data.get(b"RFC822.SIZE") or 0) > limit:
            polled.skipped.append(
                f"A message in “{folder}” that looks like a delivery report was not read: it "
                f"is larger than {filesizeformat(limit)} (UID {uid}). Open it in your mail "
                "program; Mailroom leaves it where it is.")
            continue
        wanted.append(uid)
    for start in range(0, len(wanted), _BODIES):
        chunk = wanted[start:start + _BODIES]
        fetched = sorted(client.fetch(chunk, [b"BODY.PEEK[]"]).items())
        found = [Found(uid, data.get(b"BODY[]") or b"") for uid, data in fetched]
        recorded = record_many(account, found, folder=folder, uidvalidity=validity)
        polled.reports += sum(f.report is not None for f in found)
        polled.matched += len(recorded)
        polled.ignored += sum(f.report is not None for f in found) - len(recorded)
        if recorded:
            _file(client, imap, folder, [f.uid for f in found if f.recorded])


def _file(client: IMAPClient, imap: ImapSettings, folder: str, uids: list[int]) -> None:
    """Matched reports: flagged \\Seen, and moved to the reports folder if one is set."""
    client.add_flags(uids, [b"\\Seen"], silent=True)
    target = imap.reports_folder
    if not target or target == folder:
        return
    if not client.folder_exists(target):
        client.create_folder(target)
    if client.has_capability("MOVE"):
        client.move(uids, target)
        return
    client.copy(uids, target)
    client.add_flags(uids, [b"\\Deleted"], silent=True)
    client.uid_expunge(uids)  # these UIDs only (UIDPLUS), never anything else flagged


@dataclass
class Found:
    """One message read whole from a folder, and what became of it."""

    uid: int
    raw: bytes
    report: reports.Report | None = None
    digest: str = ""
    recorded: bool = False


def record(account: SmtpAccount, raw: bytes, *, folder: str, uidvalidity: int,
           uid: int) -> DeliveryReport | None:
    """One report: see :func:`record_many`."""
    recorded = record_many(account, [Found(uid, raw)], folder=folder, uidvalidity=uidvalidity)
    return recorded[0] if recorded else None


def record_many(account: SmtpAccount, found: list[Found], *, folder: str,
                uidvalidity: int) -> list[DeliveryReport]:
    """Match each report to one of ``account``'s messages and record the matched ones, all
    in one transaction (one commit for the batch; a few queries for all of them). Skipped:
    what is no report, is about mail this account did not send, or was recorded before."""
    for f in found:
        f.report = reports.parse(f.raw)
    messages = _match(account, [f.report for f in found if f.report and f.report.recipients])
    todo = [(f, messages[id(f.report)]) for f in found if id(f.report) in messages]
    todo = _not_yet(account, todo, folder, uidvalidity)
    if not todo:
        return []
    try:
        with transaction.atomic():
            saved = [_save(account, message, f, folder, uidvalidity) for f, message in todo]
            _mark([(message, f.report, report)
                   for (f, message), report in zip(todo, saved, strict=True)])
    except IntegrityError:  # another worker recorded one of them a moment ago: one by one
        return [] if len(todo) == 1 else _one_by_one(account, todo, folder, uidvalidity)
    for (f, message), report in zip(todo, saved, strict=True):
        f.recorded = True
        log.info("report account=%s message=%s kind=%s recipients=%s", account.pk, message.pk,
                 report.kind, [(r.address, r.state) for r in f.report.recipients])
    return saved


def _not_yet(account, todo: list, folder: str, uidvalidity: int) -> list:
    """Drop the reports recorded before (the same UID, or the same bytes elsewhere)."""
    for f, _message in todo:
        f.digest = hashlib.sha256(f.raw).hexdigest()
    known = DeliveryReport.objects.filter(
        Q(digest__in=[f.digest for f, _m in todo])
        | Q(folder=folder, uidvalidity=uidvalidity, uid__in=[f.uid for f, _m in todo]),
        account=account).values_list("digest", "folder", "uidvalidity", "uid")
    digests = {d for d, *_ in known}
    uids = {u for _d, fo, v, u in known if (fo, v) == (folder, uidvalidity)}
    seen: set[str] = set()
    kept = []
    for f, message in todo:
        if f.digest in digests or f.uid in uids or f.digest in seen:
            continue
        seen.add(f.digest)
        kept.append((f, message))
    return kept


def _one_by_one(account, todo: list, folder: str, uidvalidity: int) -> list[DeliveryReport]:
    saved = []
    for f, _message in todo:
        report = record(account, f.raw, folder=folder, uidvalidity=uidvalidity, uid=f.uid)
        f.recorded = report is not None
        saved += [report] if report is not None else []
    return saved


def _match(account: SmtpAccount, found: list[reports.Report]) -> dict[int, OutboxMessage]:
    """The account's own message each report is about (keyed by ``id(report)``): by the
    envelope id, else by the returned Message-ID — only among this account's messages, so
    a forged envelope id of another user's message finds nothing here."""
    envids = {r.envid for r in found if r.envid}
    ids = {i for r in found for i in r.message_ids}
    mine = OutboxMessage.objects.filter(account=account).filter(
        Q(envid__in=envids) | Q(message_id__in=ids)).order_by("pk") if envids or ids else []
    by_envid = {m.envid: m for m in mine if m.envid}
    by_id = {m.message_id: m for m in mine}
    matched = {}
    for r in found:
        message = by_envid.get(r.envid) if r.envid else None
        message = message or next((by_id[i] for i in r.message_ids if i in by_id), None)
        if message is not None:
            matched[id(r)] = message
    return matched


def _save(account, message: OutboxMessage, f: Found, folder: str,
          uidvalidity: int) -> DeliveryReport:
    found = f.report
    assert found is not None
    report = DeliveryReport(account=account, message=message, kind=found.kind, folder=folder,
                            uidvalidity=uidvalidity, uid=f.uid, digest=f.digest, size=len(f.raw),
                            subject=found.subject[:998], reporting_mta=found.reporting_mta[:255],
                            arrived_at=found.arrived_at)
    report.raw.save("report.eml", ContentFile(f.raw), save=False)
    report.save()
    return report


def _took(message: OutboxMessage, recipient: Recipient) -> bool:
    """Whether the account's server took the message for this recipient: accepted, or —
    when the outcome was unknown — anything but refused (the report proves it had it)."""
    if recipient.status == Recipient.Status.ACCEPTED:
        return True
    return (message.status == OutboxMessage.Status.UNKNOWN
            and recipient.status != Recipient.Status.FAILED)


def _mark(reported: list[tuple[OutboxMessage, reports.Report, DeliveryReport]]) -> None:
    """Each report's recipients take their state; messages with a bounce become bounced."""
    now = timezone.now()
    recipients: dict[tuple[int, str], Recipient] = {
        (r.message_id, r.address.lower()): r
        for r in Recipient.objects.filter(message__in={m.pk for m, _f, _r in reported})}
    bounced = set()
    for message, found, report in reported:
        for said in found.recipients:
            recipient = recipients.get((message.pk, said.address.lower()))
            if recipient is None or not _took(message, recipient):
                continue  # not one the server took (a first-hop failure says it all already)
            if recipient.remote in _FINAL and said.state == Recipient.Remote.DELAYED:
                continue  # a late warning never undoes a bounce or a delivery
            recipient.remote = said.state
            Recipient.objects.filter(pk=recipient.pk).update(
                remote=said.state, remote_mta=said.remote_mta, remote_status=said.status,
                remote_code=said.code, remote_text=said.text, remote_at=now, report=report,
                remote_reason=policy.report_reason(said.state, said.status))
            if said.state == Recipient.Remote.BOUNCED:
                bounced.add(message.pk)
    if bounced:
        OutboxMessage.objects.filter(
            pk__in=bounced, status__in=[OutboxMessage.Status.SENT, OutboxMessage.Status.UNKNOWN],
        ).update(status=OutboxMessage.Status.BOUNCED)
