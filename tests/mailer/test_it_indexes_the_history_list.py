"""The history list and the sweeper stay index lookups at 100,000+ messages: the query
plans name the indexes. (On PostgreSQL the sweeper's due query also uses the partial
"outbox_due_pending" index; SQLite cannot match a partial index against bound values.)"""

from django.db import connection
from django.utils import timezone

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
    assert ("outbox_owner_status_created" if connection.vendor == "sqlite" else "outbox_owner_") in by_status


def test_the_lease_reclaim_uses_its_partial_index(db):
    plan = _plan(OutboxMessage.objects.filter(status="sending", lease_until__lt=timezone.now()))
    assert "outbox_sending_lease" in plan
