"""History search: messages whose subject, To line or any recipient address (Cc and Bcc
included) contains a term, case-insensitively — fast at 100,000+ messages.

A ``%term%`` LIKE cannot use a B-tree index, so each database gets a substring index
(migration 0004):

- PostgreSQL: ``pg_trgm`` GIN indexes on ``UPPER(subject)``, ``UPPER(to_display)`` and
  ``UPPER(address)`` — the very expressions Django's ``icontains`` compares, so the
  planner uses them for the ORM query below.
- SQLite: FTS5 tables with the ``trigram`` tokenizer (case folding on, also for non-ASCII
  letters), kept in sync by triggers. A quoted phrase of a term's trigrams matches exactly
  the rows containing the term. Terms under three characters have no trigram: they fall
  back to the plain LIKE scan (which SQLite folds for ASCII letters only).

Either way the matches come from one ``UNION`` subquery (messages by subject or To, and
messages by recipient), so the page stays one query however many rows match, and the
database can start from the few matching ids instead of filtering every message.
"""

from __future__ import annotations

from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from mailer import triggers
from mailer.models import OutboxMessage, Recipient

MESSAGE_FTS = "mailer_outbox_search"
RECIPIENT_FTS = "mailer_recipient_search"
TRIGRAM = 3  # the shortest term a trigram index can find
# (table, prefix, column): the trigram indexes on PostgreSQL, named <prefix>_<column>_trgm.
# A GIN index takes new rows into a pending list that every search reads through until
# (auto)vacuum merges it: at the default 4 MB, a search after a burst of mail took twice
# as long. 256 kB keeps writes batched and bounds that.
_TRIGRAM_INDEXES = [("mailer_outboxmessage", "outbox", "subject"),
                    ("mailer_outboxmessage", "outbox", "to_display"),
                    ("mailer_recipient", "recipient", "address")]
# FTS5 table -> (content table, indexed columns, stored-only columns).
_FTS_TABLES = {
    MESSAGE_FTS: ("mailer_outboxmessage", ["subject", "to_display"], []),
    RECIPIENT_FTS: ("mailer_recipient", ["address"], ["message_id"]),
}


def _fts_sql(fts: str, table: str, indexed: list[str], stored: list[str]) -> list[str]:
    """An external-content FTS5 table and its triggers: the text stays in ``table`` only;
    the triggers pass the old values to FTS5's 'delete' command, as the FTS5 documentation
    prescribes, and the update trigger fires only when a searched column changes (not on
    every status change). Ends by indexing the rows that exist already."""
    columns = [*indexed, *stored]
    names = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns)
    insert = f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new});"
    delete = f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old});"
    definition = ", ".join([*indexed, *(f"{c} UNINDEXED" for c in stored)])
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({definition}, content='{table}', "
        "content_rowid='id', tokenize='trigram case_sensitive 0')",
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {names} ON {table} WHEN {changed} "
        f"BEGIN {delete} {insert} END",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",
    ]


SETUP = {
    "postgresql": ["CREATE EXTENSION IF NOT EXISTS pg_trgm", *(
        f"CREATE INDEX IF NOT EXISTS {prefix}_{column}_trgm ON {table} "
        f"USING gin (UPPER({column}) gin_trgm_ops) WITH (gin_pending_list_limit = 256)"
        for table, prefix, column in _TRIGRAM_INDEXES
    )],
    "sqlite": [sql for fts, spec in _FTS_TABLES.items() for sql in _fts_sql(fts, *spec)],
}
_SQLITE_TRIGGERS = [f"{fts}_{kind}" for fts in _FTS_TABLES for kind in ("ai", "ad", "au")]
TEARDOWN = {
    "postgresql": [f"DROP INDEX IF EXISTS {prefix}_{column}_trgm"
                   for _table, prefix, column in _TRIGRAM_INDEXES],
    "sqlite": [*(f"DROP TRIGGER IF EXISTS {name}" for name in _SQLITE_TRIGGERS),
               *(f"DROP TABLE IF EXISTS {fts}" for fts in _FTS_TABLES)],
}

_SQLITE_MATCHES = (
    f"SELECT rowid FROM {MESSAGE_FTS} WHERE {MESSAGE_FTS} MATCH %s "
    f"UNION SELECT message_id FROM {RECIPIENT_FTS} WHERE {RECIPIENT_FTS} MATCH %s"
)


def _phrase(term: str) -> str:
    """An FTS5 string literal: the whole term as one phrase, quotes doubled."""
    return '"' + term.replace('"', '""') + '"'


def search(qs: QuerySet[OutboxMessage], term: str) -> QuerySet[OutboxMessage]:
    """``qs`` narrowed to messages matching ``term`` (already stripped, not empty)."""
    vendor = connections[qs.db].vendor
    if vendor == "sqlite" and len(term) >= TRIGRAM:
        phrase = _phrase(term)
        return qs.filter(pk__in=RawSQL(_SQLITE_MATCHES, (phrase, phrase)))
    # order_by(): no sorting inside the subqueries (the models' default orderings).
    by_message = OutboxMessage.objects.filter(
        Q(subject__icontains=term) | Q(to_display__icontains=term)
    ).order_by().values("pk")
    by_recipient = Recipient.objects.filter(address__icontains=term).order_by().values("message_id")
    if vendor == "postgresql":
        # Each side is a bitmap scan of its trigram indexes; the outer query then reads
        # only the matching messages.
        return qs.filter(pk__in=by_message.union(by_recipient))
    # A term too short for a trigram (SQLite): scan, as before the indexes.
    return qs.filter(Q(subject__icontains=term) | Q(to_display__icontains=term)
                     | Q(pk__in=by_recipient))



def install(connection) -> None:
    """Create the search indexes (migration 0005)."""
    triggers.execute(connection, SETUP)


def uninstall(connection) -> None:
    triggers.execute(connection, TEARDOWN)


def repair(connection) -> bool:
    """Put back SQLite triggers a later migration dropped, and re-index; True if needed
    (``mailer.triggers``; run after every ``migrate``)."""
    if not triggers.lost_on_sqlite(connection, MESSAGE_FTS, _SQLITE_TRIGGERS):
        return False  # another database, not migrated yet, or intact
    uninstall(connection)
    install(connection)
    return True
