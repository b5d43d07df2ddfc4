"""Conditional writes of several rows at once: the end-of-data mark and the record.

``write(first, *then)`` runs the update ``first`` and, only if it matched a row, the others:
all or nothing, and on PostgreSQL in one statement (data-modifying CTEs, one round trip,
atomic without a transaction around it). ``first`` is always the message row conditional
on our attempt id, so a worker that no longer holds the message writes nothing.

Why SQL by hand: the delivery loop writes several rows per message, and compiling the
ORM's UPDATEs cost more than running them. The SQL is only ``UPDATE table SET col = %s, …
WHERE col = %s AND …``; values are converted by the fields themselves
(``get_db_prep_save``), as the ORM does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction


@dataclass(frozen=True)
class Update:
    """``model.objects.filter(**where).update(**values)``, for the lookups below only."""

    model: Any
    where: dict[str, Any]
    values: dict[str, Any]


# The lookups ``where`` may use (``field`` alone is equality).
_LOOKUPS = {"exact": "{col} = %s", "lte": "{col} <= %s", "isnull": "{col} IS NULL"}


def _sql(update: Update) -> tuple[str, list]:
    meta, ops = update.model._meta, connection.ops

    def field(name: str):
        f = meta.pk if name == "pk" else meta.get_field(name)
        return f, ops.quote_name(f.column)

    sets, conds, params = [], [], []
    for name, value in update.values.items():
        f, col = field(name)
        sets.append(f"{col} = %s")
        params.append(f.get_db_prep_save(value, connection))
    for key, value in update.where.items():
        name, _, lookup = key.partition("__")
        f, col = field(name)
        conds.append(_LOOKUPS[lookup or "exact"].format(col=col))
        if lookup != "isnull":  # ``field__isnull=True`` only
            params.append(f.get_db_prep_value(value, connection))
    table = ops.quote_name(meta.db_table)
    return f"UPDATE {table} SET {', '.join(sets)} WHERE {' AND '.join(conds)}", params


def write(first: Update, *then: Update, durable: bool = False) -> bool:
    """Run ``first``, and ``then`` only if ``first`` matched a row; return whether it did.

    ``durable`` (the end-of-data mark): on PostgreSQL the commit waits for its WAL flush
    even where the server, the database or the role is configured with asynchronous
    commits — no setting may turn an ``unknown`` into a blind resend. It is set in the same
    statement (``set_config(…, true)``, i.e. ``SET LOCAL``): no extra round trip. Every
    other commit here is durable by default (``synchronous_commit`` is never lowered)."""
    return write_groups([(first, *then)], durable=durable)[0]


def write_groups(groups: Sequence[Sequence[Update]], *, durable: bool = False) -> list[bool]:
    """Several conditional writes, each as :func:`write`'s ``first, *then``, in one commit
    (one statement on PostgreSQL): a message's record and the next message's end-of-data
    mark cost one WAL flush, not two. Returns, per group, whether its ``first`` matched."""
    if connection.vendor != "postgresql":
        matched = []
        with transaction.atomic(), connection.cursor() as cur:
            for first, *then in groups:
                cur.execute(*_sql(first))
                matched.append(cur.rowcount > 0)
                if matched[-1]:
                    for update in then:
                        cur.execute(*_sql(update))
        return matched
    parts: list[str] = []
    params: list = []
    counts = []
    for g, (first, *then) in enumerate(groups):
        sql, params_first = _sql(first)
        parts.append(f"first{g} AS ({sql} RETURNING 1)")
        params += params_first
        for n, update in enumerate(then):
            sql_n, params_n = _sql(update)
            parts.append(f"u{g}_{n} AS ({sql_n} AND EXISTS (SELECT 1 FROM first{g}))")
            params += params_n
        counts.append(f"(SELECT count(*) FROM first{g})")
    select = f"SELECT {', '.join(counts)}"
    if durable:
        # A plain SELECT in a WITH runs only if referenced: hence FROM flush.
        parts.append("flush AS (SELECT set_config('synchronous_commit', 'on', true))")
        select += " FROM flush"
    with connection.cursor() as cur:  # one statement: atomic on its own
        cur.execute(f"WITH {', '.join(parts)} {select}", params)
        return [n > 0 for n in cur.fetchone()]
