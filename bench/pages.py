#!/usr/bin/env python3
"""Benchmark of the web UI's heavy pages with 100,000 messages × 3 recipients.

    .venv/bin/python bench/pages.py                 # SQLite (the embedded default)
    .venv/bin/python bench/pages.py --postgres      # PostgreSQL on 127.0.0.1 (its own DB)
    .venv/bin/python bench/pages.py --messages 20000 --runs 10   # a quicker run

It fills a fresh database (bulk_create), signs a user in with Django's test Client, and for
each page prints the median server time per request (the whole request in-process:
middleware, views, queries, templates), the query count (CaptureQueriesContext), and the
ratio against Django's bare login page measured in the same run. Targets: the same number
of queries whatever the page size, and every page under 10× the login page.

Nothing on these pages is cached: the history's tab counts are the sums of
``mailer.counts`` (folded by ``compact()`` after the fill, as Celery beat would have), or,
under a date or search filter, a count of the filtered messages. A last case measures the
first page with 10,000 counter rows not yet folded (a busy half-minute between two beat
compactions), and the compaction that folds them.

Then each of the pages' two speed-ups against its absence, measured alternately in the
same run (``--no-compare`` skips it): the history rows rendered by ``{% outbox_row %}``
against the included template they replaced (``ROW_TEMPLATE`` below, kept here only as
that baseline), and the tab counts summed from ``mailer.counts`` against a GROUP BY over
the owner's messages. A speed-up is kept only where it is more than noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_RATIO = 10.0
STATUS_MIX = [  # (status, share of messages)
    ("sent", 0.80), ("failed", 0.07), ("deferred", 0.04), ("queued", 0.03),
    ("cancelled", 0.03), ("scheduled", 0.02), ("unknown", 0.01),
]


def _configure(postgres: bool) -> None:
    os.environ["MAILROOM_DATA_DIR"] = tempfile.mkdtemp(prefix="mailroom-bench-pages-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if postgres:
        name = f"mailroom_bench_pages_{os.getpid()}"
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    else:
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()


def _create_database(postgres: bool) -> None:
    if not postgres:
        return
    import psycopg
    from django.db import connection

    name = connection.settings_dict["NAME"]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')


def _drop_database(postgres: bool) -> None:
    if not postgres:
        return
    import psycopg
    from django.db import connections

    name = connections["default"].settings_dict["NAME"]
    connections.close_all()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(n_messages: int):
    """One user, two accounts, ``n_messages`` messages over a year, 3 recipients each."""
    import uuid
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from mailer.models import DeliveryAttempt, OutboxMessage, Recipient, SmtpAccount

    user = get_user_model().objects.create_user("bench", "bench@example.com", "bench-pass")
    accounts = [
        SmtpAccount.objects.create(owner=user, label=label, from_address=f"bench@{label}.example",
                                   host="127.0.0.1", port=2525, is_default=i == 0)
        for i, label in enumerate(("work", "home"))
    ]
    eml = default_storage.save("outbox/bench.eml", ContentFile(
        b"From: bench@work.example\r\nTo: a@example.org\r\nSubject: Bench\r\n"
        b"Message-ID: <bench@work.example>\r\n\r\nHello.\r\n"))
    now = timezone.now()
    statuses = [s for s, share in STATUS_MIX for _ in range(round(share * 100))]
    # created_at is auto_now_add, which would stamp every row "now": spread them over time
    # instead so that the date filter selects a realistic share.
    OutboxMessage._meta.get_field("created_at").auto_now_add = False
    started = time.perf_counter()
    batch = 5000
    for first in range(0, n_messages, batch):
        rows = []
        for i in range(first, min(first + batch, n_messages)):
            addresses = [f"user{(i * 3 + k) % 7919}@example{(i + k) % 97}.org" for k in range(3)]
            rows.append(OutboxMessage(
                owner=user, account=accounts[i % 2], status=statuses[i % len(statuses)],
                eml=eml, size=1200, envelope_from="bench@work.example",
                message_id=f"<{i}.bench@work.example>", subject=f"Report {i} for week {i % 52}",
                to_display=", ".join(addresses),
                created_at=now - timedelta(seconds=(n_messages - i) * 300),
            ))
        created = OutboxMessage.objects.bulk_create(rows)
        Recipient.objects.bulk_create(
            Recipient(message=m, address=a, kind="to",
                      status="accepted" if m.status == "sent" else "pending")
            for m in created for a in m.to_display.split(", ")
        )
    OutboxMessage._meta.get_field("created_at").auto_now_add = True
    fill_seconds = time.perf_counter() - started
    _settle()
    target = OutboxMessage.objects.filter(owner=user).order_by("-id").first()
    for _ in range(3):
        DeliveryAttempt.objects.create(
            message=target, attempt_id=uuid.uuid4(), started_at=now, finished_at=now,
            outcome="deferred", reply_code=451, reply_enhanced="4.3.0", reply_text="Try later",
            transcript="S: 220 bench\nC: EHLO bench\nS: 250 ok\n" * 20,
        )
    return user, accounts, target, fill_seconds


def _settle() -> None:
    """What Celery beat and autovacuum would have done by now in a long-lived database:
    fold the tab counters the fill's triggers wrote (``mailer.counts.compact``), and fresh
    statistics — without them PostgreSQL plans the first queries as if the tables were
    empty — plus, on PostgreSQL, the visibility map that lets a count read an index only."""
    from django.db import connection

    from mailer import counts

    counts.compact()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def _backlog(user, rows: int) -> None:
    """``rows`` counter rows not yet folded: messages sent and put back, through the
    triggers (-1 and +1 for each move), as workers do between two compactions."""
    from mailer.models import OutboxMessage

    ids = list(OutboxMessage.objects.filter(owner=user, status="sent")
               .order_by("id").values_list("pk", flat=True)[:rows // 4])
    OutboxMessage.objects.filter(pk__in=ids).update(status="queued")
    OutboxMessage.objects.filter(pk__in=ids).update(status="sent")


# The included template that {% outbox_row %} replaced (8dd8be9), with the split words the
# row has gained since: the baseline of the row speed-up, never used by the web UI.
ROW_TEMPLATE = (
    '{% load webui %}{% with url=m.pk|message_url %}<tr id="message-row-{{ m.pk }}" '
    'data-status="{{ m.status }}"{% if oob %} hx-swap-oob="true"{% endif %}>\n'
    '  <td><span class="badge badge-{{ m.status }}">{{ m.get_status_display }}</span>'
    '{% if m.split and m.split.mixed or m.split.failed %} <span class="split muted small '
    'nowrap">{{ m.split.words }}</span>{% endif %}</td>\n'
    '  <td class="subject"><a href="{{ url }}">{{ m.subject|default:"(no subject)" }}</a>'
    '{% if m.status == "deferred" and m.next_attempt_at %} <span class="muted small nowrap">'
    '· next try {{ m.next_attempt_at|date:"H:i" }}</span>{% endif %}</td>\n'
    '  <td class="clip">{{ m.to_display }}</td>\n'
    '  <td class="opt">{{ m.account_label|default:"—" }}</td>\n'
    '  <td class="nowrap muted small">{% if m.sent_at %}{{ m.sent_at|date:"Y-m-d H:i" }}'
    '{% elif m.scheduled_at %}for {{ m.scheduled_at|date:"Y-m-d H:i" }}'
    '{% else %}{{ m.created_at|date:"Y-m-d H:i" }}{% endif %}</td>\n'
    "</tr>{% endwith %}"
)


def _use_row_template(on: bool) -> None:
    """Render history rows through ROW_TEMPLATE (on) or the Python tag (off), and drop
    the compiled templates so that the next request parses them with that tag."""
    from django.template import Context, Template, engines

    from webui.templatetags import webui as tags

    if not hasattr(_use_row_template, "python"):
        _use_row_template.python = tags.register.tags["outbox_row"]
    if on:
        template = Template(ROW_TEMPLATE)

        def outbox_row(m, oob=False):
            return template.render(Context({"m": m, "oob": oob}))

        tags.register.simple_tag(outbox_row, name="outbox_row")
    else:
        tags.register.tags["outbox_row"] = _use_row_template.python
    for engine_loader in engines["django"].engine.template_loaders:
        if hasattr(engine_loader, "reset"):
            engine_loader.reset()


def _use_group_by_counts(on: bool) -> None:
    """Tab counts by a GROUP BY over the owner's messages (on) or from mailer.counts."""
    import webui.views.outbox as views
    from mailer import counts
    from mailer.models import OutboxMessage

    def by_status(owner, account=None, *, using="default"):
        mine = OutboxMessage.objects.using(using).filter(owner=owner)
        return counts.by_status_in(mine if account is None else mine.filter(account=account))

    views.by_status = by_status if on else counts.by_status


def _compare(client, baseline, runs: int, label: str, url: str, switch) -> None:
    """``url`` with the speed-up and without it, alternately in rounds, so that a machine
    getting busier slows both alike; the ratio of the medians is what the speed-up buys."""
    with_ms, without_ms = [], []
    for _ in range(3):
        for on, times in ((False, with_ms), (True, without_ms)):
            switch(on)
            ms, _login, _queries = _measure(client, url, baseline, max(5, runs // 3))
            times.append(ms)
    switch(False)
    a, b = statistics.median(with_ms), statistics.median(without_ms)
    print(f"  {label:<48} with {a:7.2f} ms  without {b:7.2f} ms  without/with {b / a:5.2f}×")


def _queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured)  # read now: the next request clears the connection's query log


def _measure(client, url: str, baseline, runs: int):
    """Median milliseconds of ``url`` and of the login page, requested alternately (so a
    machine that gets busier during the run slows both alike), and the query count."""
    anonymous, login_url = baseline
    for _ in range(3):  # warm-up: template loading, query plans, connections
        client.get(url)
        anonymous.get(login_url)
    queries = _queries(client, url)
    page_times, login_times = [], []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url)
        page_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        anonymous.get(login_url)
        login_times.append(time.perf_counter() - started)
    return statistics.median(page_times) * 1000, statistics.median(login_times) * 1000, queries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    parser.add_argument("--no-compare", action="store_true", help="skip the speed-up ratios")
    args = parser.parse_args()

    _configure(args.postgres)
    _create_database(args.postgres)
    try:
        return _run(args)
    finally:
        _drop_database(args.postgres)


def _run(args) -> int:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    import webui.views.outbox as outbox_views
    from mailer import counts as status_counts
    from mailer.models import OutboxMessage, StatusCount

    # The test Client's host. (Not setup_test_environment(): it instruments every template
    # render for test assertions, which would be measured too.)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    call_command("migrate", verbosity=0)
    user, accounts, target, fill_seconds = _fill(args.messages)
    print(f"database: {connection.vendor}; {args.messages:,} messages × 3 recipients "
          f"filled in {fill_seconds:.1f} s; median of {args.runs} requests each")

    anonymous = Client()
    client = Client()
    client.force_login(user)
    baseline = (anonymous, "/login/")
    print(f"  Django's login page (the baseline): {_queries(anonymous, '/login/')} queries; "
          "its time is measured alternately with each page")

    since = (timezone.localdate() - timezone.timedelta(days=30)).isoformat()
    in_flight = ",".join(str(pk) for pk in OutboxMessage.objects.filter(
        owner=user, status="queued").order_by("-id").values_list("pk", flat=True)[:50])
    pages = [
        ("history, first page", "/outbox/"),
        ("history, page 40", "/outbox/?page=40"),
        (
            "history, filtered (failed, one account)",
            f"/outbox/?tab=failed&account={accounts[0].pk}",
        ),
        ("history, filtered by date (30 days)", f"/outbox/?date_from={since}"),
        ("history, search a recipient", "/outbox/?q=user4242@"),
        ("history, search a subject", "/outbox/?q=Report+99999"),
        ("message page", f"/messages/{target.pk}/"),
        ("message page, live status (htmx poll)", f"/messages/{target.pk}/status/"),
        ("history, live poll (50 rows in flight)", f"/outbox/live/?ids={in_flight}"),
    ]
    over = []

    def measure(label: str, url: str) -> None:
        ms, login_ms, queries = _measure(client, url, baseline, args.runs)
        ratio = ms / login_ms
        print(f"  {label:<48} {ms:7.2f} ms  {queries:2d} queries  login {login_ms:5.2f} ms"
              f"  ratio {ratio:6.2f}×")
        if ratio >= TARGET_RATIO:
            over.append(label)

    for label, url in pages:
        measure(label, url)
    backlog = 10_000
    _backlog(user, backlog)
    measure(f"history, first page, {StatusCount.objects.count():,} counter rows", "/outbox/")
    started = time.perf_counter()
    folded = status_counts.compact()
    print(f"  compaction: {folded:,} rows fewer in {(time.perf_counter() - started) * 1000:.1f} ms;"
          f" {StatusCount.objects.count()} left")

    if not args.no_compare:
        print("speed-ups, each against its absence (alternating rounds):")
        _compare(client, baseline, args.runs, "rows: history, first page", "/outbox/",
                 _use_row_template)
        _compare(client, baseline, args.runs, "rows: live poll (50 rows)",
                 f"/outbox/live/?ids={in_flight}", _use_row_template)
        _compare(client, baseline, args.runs, "counters: history, first page", "/outbox/",
                 _use_group_by_counts)
        _compare(client, baseline, args.runs, "counters: one account's failed tab",
                 f"/outbox/?tab=failed&account={accounts[0].pk}", _use_group_by_counts)

    counts = {}
    for size in (10, 50, 200):
        outbox_views.PAGE_SIZE = size
        counts[size] = _queries(client, "/outbox/")
    outbox_views.PAGE_SIZE = 50
    constant = len(set(counts.values())) == 1
    print("  queries by page size: " + ", ".join(f"{k} rows → {v}" for k, v in counts.items())
          + (" (constant)" if constant else " (NOT constant)"))
    ok = constant and not over
    print(f"target < {TARGET_RATIO:.0f}× the login page: "
          + ("met by every page" if not over else "NOT met by " + "; ".join(over)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
