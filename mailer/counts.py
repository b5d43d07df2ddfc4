"""Outbox messages per status, exact and cheap at any size: counter rows kept by the
database itself (``mailer.models.StatusCount``).

Triggers on ``mailer_outboxmessage`` append a row per change: +1 for the key (owner,
account, status) of an inserted message, -1 for a deleted one, and -1 for the old key and
+1 for the new one when an update moves a message between keys. Being triggers, they see
every path — the ORM's ``save()``, ``update()``, ``bulk_create()`` and cascades (a deleted
user, an account set to NULL), and the raw SQL of ``mailer.delivery`` — in the same
transaction as the change, so a reader sums exactly the messages it could see.

Rows are only ever appended (never one row per key updated in place): workers move
messages between statuses side by side, and a shared counter row would make them wait for
each other, and could deadlock two transactions that move messages in opposite directions.
``compact()`` (Celery beat, every ``MAILROOM_COUNTS_COMPACT_SECONDS``) folds each key's
rows into one.

- PostgreSQL: INSERT and DELETE are statement-level triggers reading the transition table,
  so a ``bulk_create`` of 5,000 messages or a cascade adds one row per key, not per message;
  UPDATE is a row-level trigger limited to the three columns with a ``WHEN`` that compares
  them, so the many other updates of a message (lease, end-of-data mark, wait reason) do not
  call it at all.
- SQLite: row-level triggers (the only kind). SQLite drops a table's triggers when a
  migration copies the table to alter it: ``repair()`` puts them back and recounts
  (``mailer.triggers``).

Why: the history's tab counts would otherwise be a GROUP BY over every message the user
has. Measured by ``bench/pages.py`` (100,000 messages × 3 recipients, alternating rounds,
2026-12-06): the GROUP BY takes 4.24× these sums on SQLite's first page and 3.18× on one
account's failed tab, 2.86× and 3.39× on PostgreSQL. The triggers cost the sending side:
``bench/pipeline.py --without status-counters`` ran 1.12× faster (106.7 against 95.5 msg/s,
2 KB into smtp-sink, Redis + PostgreSQL, two runs each); kept, since every page load pays
the GROUP BY and the pages are what they are for.
"""

from __future__ import annotations

from django.db import connections, transaction
from django.db.models import CharField, Count, QuerySet, Sum
from django.db.models.functions import Cast

from mailer import triggers
from mailer.models import OutboxMessage, StatusCount

OUTBOX = "mailer_outboxmessage"
COUNTS = "mailer_statuscount"
KEY = "owner_id, account_id, status"
_INDEX_ORDER = "owner_id, status, account_id"  # the same key, in statuscount_key's order
# Any fixed number: only one compaction at a time (pg_try_advisory_xact_lock).
_PG_LOCK = 0x4D41494C  # "MAIL"

_PG_FUNCTIONS = {
    # (function, body); transition tables are named new_rows / old_rows below.
    "mailer_statuscount_inserted": f"INSERT INTO {COUNTS} ({KEY}, n) "
    f"SELECT {KEY}, COUNT(*) FROM new_rows GROUP BY {KEY};",
    "mailer_statuscount_deleted": f"INSERT INTO {COUNTS} ({KEY}, n) "
    f"SELECT {KEY}, -COUNT(*) FROM old_rows GROUP BY {KEY};",
    "mailer_statuscount_moved": f"INSERT INTO {COUNTS} ({KEY}, n) VALUES "
    "(OLD.owner_id, OLD.account_id, OLD.status, -1), "
    "(NEW.owner_id, NEW.account_id, NEW.status, 1);",
}
_MOVED_PG = ("OLD.owner_id IS DISTINCT FROM NEW.owner_id OR OLD.account_id IS DISTINCT FROM "
             "NEW.account_id OR OLD.status IS DISTINCT FROM NEW.status")
_MOVED_SQLITE = ("old.owner_id IS NOT new.owner_id OR old.account_id IS NOT new.account_id "
                 "OR old.status IS NOT new.status")
_BACKFILL = (f"INSERT INTO {COUNTS} ({KEY}, n) SELECT {KEY}, COUNT(*) FROM {OUTBOX} "
             f"GROUP BY {KEY}")
_TRIGGERS = ["mailer_statuscount_ai", "mailer_statuscount_ad", "mailer_statuscount_au"]


def _sqlite_row(prefix: str, n: int) -> str:
    return (f"INSERT INTO {COUNTS} ({KEY}, n) "
            f"VALUES ({prefix}.owner_id, {prefix}.account_id, {prefix}.status, {n});")


SETUP = {
    "postgresql": [
        *(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
          f"BEGIN {body} RETURN NULL; END $$" for name, body in _PG_FUNCTIONS.items()),
        f"CREATE TRIGGER mailer_statuscount_ai AFTER INSERT ON {OUTBOX} "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mailer_statuscount_inserted()",
        f"CREATE TRIGGER mailer_statuscount_ad AFTER DELETE ON {OUTBOX} "
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mailer_statuscount_deleted()",
        f"CREATE TRIGGER mailer_statuscount_au AFTER UPDATE OF {KEY} ON {OUTBOX} "
        f"FOR EACH ROW WHEN ({_MOVED_PG}) EXECUTE FUNCTION mailer_statuscount_moved()",
    ],
    "sqlite": [
        f"CREATE TRIGGER mailer_statuscount_ai AFTER INSERT ON {OUTBOX} "
        f"BEGIN {_sqlite_row('new', 1)} END",
        f"CREATE TRIGGER mailer_statuscount_ad AFTER DELETE ON {OUTBOX} "
        f"BEGIN {_sqlite_row('old', -1)} END",
        f"CREATE TRIGGER mailer_statuscount_au AFTER UPDATE OF {KEY} ON {OUTBOX} "
        f"WHEN {_MOVED_SQLITE} BEGIN {_sqlite_row('old', -1)} {_sqlite_row('new', 1)} END",
    ],
}
TEARDOWN = {
    "postgresql": [
        *(f"DROP TRIGGER IF EXISTS {name} ON {OUTBOX}" for name in _TRIGGERS),
        *(f"DROP FUNCTION IF EXISTS {name}()" for name in _PG_FUNCTIONS),
    ],
    "sqlite": [f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS],
}

# The rows of every key that has more than one (a key with one row is folded already).
_FOLDABLE = (f"SELECT id FROM (SELECT id, COUNT(*) OVER (PARTITION BY {_INDEX_ORDER}) "
             f"AS rows_per_key FROM {COUNTS} {{bound}}) AS keyed WHERE rows_per_key > 1")
# One statement, one snapshot: it deletes exactly the rows it sums, so a row that another
# transaction commits meanwhile is neither deleted nor summed, and stays to be read.
_PG_COMPACT = f"""
WITH moved AS (
    DELETE FROM {COUNTS} WHERE id IN ({_FOLDABLE.format(bound="")})
    RETURNING {KEY}, n
), folded AS (
    INSERT INTO {COUNTS} ({KEY}, n)
    SELECT {KEY}, SUM(n) FROM moved GROUP BY {KEY} HAVING SUM(n) <> 0
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM moved) - (SELECT COUNT(*) FROM folded)
"""
_SQLITE_FOLDABLE = _FOLDABLE.format(bound="WHERE id <= %s")


def install(connection) -> None:
    """Create the triggers, then count the messages that exist (migration 0006).

    On PostgreSQL, CREATE TRIGGER locks the outbox against writes until the migration's
    transaction ends, and the backfill's snapshot is taken after that: every message is
    counted once, either by the backfill or by a trigger. SQLite has one writer anyway."""
    triggers.execute(connection, SETUP)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {COUNTS}")
        cursor.execute(_BACKFILL)


def uninstall(connection) -> None:
    triggers.execute(connection, TEARDOWN)


def repair(connection) -> bool:
    """Put back SQLite triggers that a later migration dropped, and recount; True if
    needed (``mailer.triggers``; run after every ``migrate``)."""
    if not triggers.lost_on_sqlite(connection, COUNTS, _TRIGGERS):
        return False  # another database, not migrated yet, or intact
    with transaction.atomic(using=connection.alias):
        uninstall(connection)
        install(connection)
    return True


def by_status(owner, account=None, *, using: str = "default") -> dict[str, int]:
    """The owner's messages per status (only statuses with messages), optionally of one
    account (an ``SmtpAccount`` or its id): exact, as of the caller's snapshot."""
    rows = StatusCount.objects.using(using).filter(owner=owner)
    if account is not None:
        rows = rows.filter(account=account)
    totals = rows.order_by().values_list("status").annotate(total=Sum("n"))
    return {status: total for status, total in totals if total}


def by_status_in(messages: QuerySet[OutboxMessage]) -> dict[str, int]:
    """Messages per status in ``messages`` (a filtered queryset the counters do not
    know: a date range, a search), counted in one GROUP BY.

    Shaped for the owner's (created_at, status) index, which answers a date range alone:
    COUNT(*), not of the id, which that index lacks on PostgreSQL; and grouped by a cast,
    not the bare column. SQLite's planner (no range statistics) would otherwise walk the
    owner's (status, created_at) index for its ready-made order and test every message's
    date — eight times the rows for 30 days of 100,000 messages. An expression has no
    index order to offer (SQLite's "+column" trick, spelled so that PostgreSQL takes it)."""
    status = Cast("status", output_field=CharField())
    return dict(messages.order_by().values_list(status).annotate(n=Count("*")))


def by_status_and_page(messages: QuerySet[OutboxMessage], statuses=(), *, offset: int,
                       limit: int) -> tuple[dict[str, int], list[int]]:
    """Messages per status in ``messages``, and the ids of one page of them (newest
    first, only ``statuses`` if given), from one evaluation of ``messages``.

    For a filter that costs more than the counting, a search: counting and then paging
    would look everything up twice. A CTE used twice is materialised (PostgreSQL 12+,
    SQLite 3.35+), so both answers come from one pass."""
    inner, params = (messages.order_by().values_list("id", "status", "created_at")
                     .query.sql_with_params())
    where = f"WHERE status IN ({', '.join(['%s'] * len(statuses))})" if statuses else ""
    sql = (f"WITH matches AS ({inner}) "
           "SELECT status, COUNT(*), NULL FROM matches GROUP BY status "
           "UNION ALL SELECT NULL, NULL, id FROM (SELECT id FROM matches "
           f"{where} ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s) AS page")
    with connections[messages.db].cursor() as cursor:
        cursor.execute(sql, [*params, *statuses, limit, offset])
        rows = cursor.fetchall()
    return ({status: n for status, n, pk in rows if pk is None},
            [pk for _status, _n, pk in rows if pk is not None])


def compact(using: str = "default") -> int:
    """Fold the counter rows of each (owner, account, status) into one row (none when the
    sum is 0); returns how many rows fewer there are. Sums are unchanged, also for
    readers and writers running meanwhile."""
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A second compaction at the same time would only wait for the first (both
            # delete the same rows): skip it, the next beat tick comes soon.
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_PG_LOCK])
            if not cursor.fetchone()[0]:
                return 0
            cursor.execute(_PG_COMPACT)
            return cursor.fetchone()[0]
        # SQLite: the settings' IMMEDIATE transactions take the write lock at BEGIN, so no
        # row can arrive between these statements; ``bound`` leaves out the folded rows
        # the INSERT adds (AUTOINCREMENT ids only grow).
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {COUNTS}")
        bound = cursor.fetchone()[0]
        cursor.execute(f"INSERT INTO {COUNTS} ({KEY}, n) SELECT {KEY}, SUM(n) FROM {COUNTS} "
                       f"WHERE id IN ({_SQLITE_FOLDABLE}) GROUP BY {KEY} HAVING SUM(n) <> 0",
                       [bound])
        folded = cursor.rowcount
        cursor.execute(f"DELETE FROM {COUNTS} WHERE id IN ({_SQLITE_FOLDABLE})", [bound])
        return cursor.rowcount - folded
