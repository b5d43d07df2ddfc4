"""Database objects Django's migrations do not model (triggers, extensions, FTS tables):
run per vendor, and put back on SQLite after a migration dropped them.

SQLite cannot alter most columns in place: Django copies the table and drops the old
one, and the table's triggers go with it. ``mailer.apps`` asks each owner of such
triggers (``mailer.search``, ``mailer.counts``) to ``repair`` after every ``migrate``."""

from __future__ import annotations


def execute(connection, statements: dict[str, list[str]]) -> None:
    """Run the statements listed for ``connection``'s vendor (none for another vendor)."""
    with connection.cursor() as cursor:
        for sql in statements.get(connection.vendor, ()):
            cursor.execute(sql)


def lost_on_sqlite(connection, table: str, triggers: list[str]) -> bool:
    """True on SQLite when ``table`` exists (its migration ran) but one of ``triggers``
    does not (a later migration copied a table and dropped it)."""
    if connection.vendor != "sqlite":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        present = {row[0] for row in cursor.fetchall()}
    return table in present and not present.issuperset(triggers)
