"""The history list and the sweeper stay index lookups at 100,000+ messages: the query
plans name the indexes. (On PostgreSQL the sweeper's due query also uses the partial
"outbox_due_pending" index; SQLite cannot match a partial index against bound values.)"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer import counts
from mailer.models import OutboxMessage


def _plan(qs) -> str:
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # An empty table makes a sequential scan cheapest; ask whether the index fits.
            cur.execute("SET LOCAL enable_seqscan = off")
        return qs.explain()


def test_the_history_list_uses_the_owner_indexes(owner):
    mine = OutboxMessage.objects.filter(owner=owner)
    assert "outbox_owner_created" in _plan(mine.order_by("-created_at", "-id")[:50])
    by_status = _plan(mine.filter(status="sent").order_by("-created_at")[:50])
    # PostgreSQL without statistics (an empty table) may take either owner index.
    assert (
        "outbox_owner_status_created" if connection.vendor == "sqlite" else "outbox_owner_"
    ) in by_status


def test_the_lease_reclaim_uses_its_partial_index(db):
    plan = _plan(OutboxMessage.objects.filter(status="sending", lease_until__lt=timezone.now()))
    assert "outbox_sending_lease" in plan


@pytest.mark.pipeline  # both passes: SQLite, then PostgreSQL
def test_a_date_filtered_count_reads_the_owner_date_index(owner):
    # The history's tab counts under a date filter (mailer.counts.by_status_in): a range
    # of the (owner, created_at, status) index, which holds every column the count needs.
    since = timezone.now() - timedelta(days=30)
    with CaptureQueriesContext(connection) as captured:
        counts.by_status_in(OutboxMessage.objects.filter(owner=owner, created_at__gte=since))
    [query] = captured.captured_queries
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute("SET LOCAL enable_bitmapscan = off")
            cur.execute("EXPLAIN " + query["sql"])
        else:
            cur.execute("EXPLAIN QUERY PLAN " + query["sql"])
        plan = "\n".join(str(row[-1]) for row in cur.fetchall())
    if connection.vendor == "sqlite":
        assert "COVERING INDEX outbox_owner_created (owner_id=? AND created_at>?)" in plan
    else:
        # Without statistics (an empty table) either owner index may serve the range;
        # with them (bench/pages.py) it is outbox_owner_created. Never the table.
        assert "Index Only Scan using outbox_owner_" in plan
