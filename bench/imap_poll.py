#!/usr/bin/env python3
"""Benchmark of bounce polling (``mailer.imap.bounces``) on a large mailbox.

    .venv/bin/python bench/imap_poll.py                  # 10,000 messages, 500 reports
    .venv/bin/python bench/imap_poll.py --messages 2000 --reports 100 --runs 1

It starts a private Dovecot (as the tests do, ``tests/imap_server.py``), fills the INBOX of
one account with ordinary mail and, among it, standard delivery reports (RFC 3464, as
Postfix writes them) for that account's messages, then measures in this process (SQLite):

* the first poll: reads the new mail, records every report. Time (median of ``--runs``),
  peak Python memory during one more poll (tracemalloc, which slows Python down, so not in
  the timed runs) and the growth of the process's maximum RSS over all of them. Targets:
  < 5 s and < 100 MB.
* the baseline, in the same run: a plain imapclient session that fetches every message
  whole (``BODY.PEEK[]``), which is what reading a mailbox without the header step costs.
* a second poll with nothing new: the IMAP commands it sends (target: one STATUS per folder
  besides the login) and its time, against one NOOP round trip.

Between runs the reports, cursors and recipients' states are reset, so every run is a
first poll of the same mailbox.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _configure() -> None:
    os.environ["MAILROOM_DATA_DIR"] = tempfile.mkdtemp(prefix="mailroom-bench-imap-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.pop("DATABASE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)


def _fill(server, user: str, messages: int, reports: int):
    """The account, its sent messages and the mailbox: returns the account."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from mailer.models import ImapSettings, OutboxMessage, Recipient, SmtpAccount
    from tests.mailer.reports import postfix_report

    owner = get_user_model().objects.create_user("bench")
    account = SmtpAccount.objects.create(owner=owner, label="bench", host="127.0.0.1",
                                         port=25, security="none", auth_mechanism="none",
                                         from_address=f"{user}@example.test",
                                         ca_certificate=server.ca_pem)
    imap = ImapSettings(account=account, host=server.host, port=server.tls_port,
                        username=user, save_to_sent=False)
    imap.set_secret(server.users[user])
    imap.save()
    now = timezone.now()
    sent = OutboxMessage.objects.bulk_create([
        OutboxMessage(owner=owner, account=account, status="sent", envelope_from=f"{user}@"
                      "example.test", message_id=f"<m{i}.{secrets.token_hex(4)}@example.test>",
                      subject=f"Message {i}", sent_at=now, last_attempt_at=now)
        for i in range(reports)])
    Recipient.objects.bulk_create([
        Recipient(message=m, address=address, status="accepted")
        for m in sent for address in ("ann@example.org", "gone@bounce.test")])
    every = max(1, messages // max(1, reports))
    mail, r = [], 0
    for i in range(messages):
        if i % every == every - 1 and r < reports:
            m = sent[r]
            mail.append(postfix_report(message_id=m.message_id, envid=m.envid, recipients=[
                ("gone@bounce.test", "failed", "5.1.1",
                 "550 5.1.1 <gone@bounce.test>: Recipient address rejected: User unknown")]))
            r += 1
        else:
            mail.append(_ordinary(i))
    with server.client(user) as c:
        for start in range(0, len(mail), 250):
            c.multiappend("INBOX", mail[start:start + 250])
    return account


def _ordinary(i: int) -> bytes:
    body = (f"Hello, this is message {i} of the benchmark mailbox.\r\n" * 30).encode()
    return (f"From: Friend {i % 97} <friend{i % 97}@example.org>\r\nTo: bench@example.test\r\n"
            f"Subject: Note number {i}\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n"
            f"Message-ID: <note{i}@example.org>\r\nContent-Type: text/plain\r\n\r\n").encode() \
        + body


def _reset(account) -> None:
    from mailer.models import DeliveryReport, ImapSettings, OutboxMessage, Recipient

    DeliveryReport.objects.filter(account=account).delete()
    ImapSettings.objects.filter(account=account).update(cursors={}, polled_at=None)
    Recipient.objects.filter(message__account=account).update(remote="", report=None)
    OutboxMessage.objects.filter(account=account).update(status="sent")


def _first_poll(account, *, memory: bool = False) -> tuple[float, float, object]:
    """Time one first poll or (``memory``: tracemalloc slows Python down, so never in a
    timed run) its peak Python memory in MB."""
    from mailer.imap import bounces

    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    polled = bounces.poll(account)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 1e6 if memory else 0.0
    tracemalloc.stop()
    return seconds, peak, polled


def _baseline(server, user: str) -> float:
    started = time.perf_counter()
    with server.client(user) as c:
        c.select_folder("INBOX", readonly=True)
        uids = c.search("ALL")
        for start in range(0, len(uids), 500):
            c.fetch(uids[start:start + 500], ["BODY.PEEK[]"])
    return time.perf_counter() - started


def _second_poll(account) -> tuple[float, list[str]]:
    import imaplib

    from mailer.imap import bounces

    sent: list[str] = []
    real = imaplib.IMAP4._command

    def counting(self, name, *args):
        sent.append(name)
        return real(self, name, *args)

    imaplib.IMAP4._command = counting  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        bounces.poll(account)
        return time.perf_counter() - started, sent
    finally:
        imaplib.IMAP4._command = real  # type: ignore[method-assign]


def _noop(server, user: str) -> float:
    with server.client(user) as c:
        started = time.perf_counter()
        c.noop()
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--reports", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    _configure()
    from tests.imap_server import start_dovecot

    directory = Path(tempfile.mkdtemp(prefix="mailroom-bench-dovecot-"))
    directory.chmod(0o755)
    user = "bench"
    server = start_dovecot(directory, {user: secrets.token_urlsafe(12)}, quota="4G")
    try:
        started = time.perf_counter()
        account = _fill(server, user, args.messages, args.reports)
        print(f"mailbox: {args.messages} messages, {args.reports} reports "
              f"(filled in {time.perf_counter() - started:.1f} s)")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ours, base = [], []
        for _ in range(args.runs):
            _reset(account)
            seconds, _peak, polled = _first_poll(account)
            assert polled.matched == args.reports, polled
            ours.append(seconds)
            base.append(_baseline(server, user))
        _reset(account)
        peaks = [_first_poll(account, memory=True)[1]]
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
        second, commands = _second_poll(account)
        noop = statistics.median(_noop(server, user) for _ in range(5))
        first, baseline = statistics.median(ours), statistics.median(base)
        work = [c for c in commands if c not in ("CAPABILITY", "LOGIN", "LOGOUT")]
        print(f"first poll:  {first:.2f} s (runs: {', '.join(f'{s:.2f}' for s in ours)}), "
              f"peak Python memory {max(peaks):.1f} MB, max RSS grew {rss_growth:.1f} MB  "
              f"[targets: < 5 s, < 100 MB]")
        print(f"baseline (every message fetched whole): {baseline:.2f} s  "
              f"ratio first poll / baseline = {first / baseline:.2f}x")
        print(f"second poll: {second * 1000:.1f} ms, commands {commands} -> "
              f"{len(work)} besides the login for {len(account.imap.cursors)} folder(s); "
              f"one NOOP round trip {noop * 1000:.2f} ms")
        ok = first < 5 and max(peaks) < 100 and work == ["STATUS"] * len(
            type(account).objects.get(pk=account.pk).imap.cursors)
        print("RESULT " + ("ok" if ok else "MISSED a target"))
        return 0 if ok else 1
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
