"""The history search (``mailer.search``) finds exactly what a case-insensitive substring
search finds — subject, To line and every recipient (Cc and Bcc too), non-ASCII letters
included — while using its index: FTS5 trigram tables on SQLite, pg_trgm on PostgreSQL.

Marked ``pipeline`` so that it runs in both passes of ``dev.py test``: on SQLite, and
again on PostgreSQL. Each pass compares the database's rows with the same Python
reference, so both backends return the same rows."""

import pytest
from django.db import connection

from mailer import search
from mailer.models import OutboxMessage, Recipient
from tests.mailer.base import make_account

pytestmark = pytest.mark.pipeline

# subject, [(address, kind)]; the To line is built from the "to" recipients.
MAIL = [
    ("INVOICE 42", [("zed@example.org", "to")]),
    ("Hello", [("amy@example.org", "to"), ("hidden@Example.NET", "bcc")]),
    ("Minutes", [("bob@example.org", "to"), ("cc-only@example.com", "cc")]),
    ("élan vital", [("ann@example.org", "to")]),
    ("Привет МИР", [("olga@example.ru", "to")]),
    ("Grüße über alles", [("JOSÉ@exámple.org", "cc"), ("x@example.org", "to")]),
    ("50% off", [("sale@example.org", "to")]),
    ("500 items", [("stock@example.org", "to")]),
    ("a_b test", [("under@example.org", "to")]),
    ("axb test", [("over@example.org", "to")]),
    ('say "hi" now', [("quote@example.org", "to")]),
    ("Report", [("user4242@example42.org", "to"), ("user42@example.org", "cc")]),
]

TERMS = [
    "invoice", "Zed@Example", "hidden@example.net", "CC-ONLY@", "ÉLAN", "мир", "ПРИВЕТ",
    "ÜBER", "josé@EXÁMPLE", "50%", "a_b", '"hi"', "user42", "user4242@", "example.org",
    "REPORT", "nothing-matches-this", "ab", "42", "%", "_",
]


def _make(owner, account) -> dict[int, list[str]]:
    """The mail, and for each message the texts a search looks at."""
    texts = {}
    for subject, recipients in MAIL:
        to = ", ".join(a for a, kind in recipients if kind == "to")
        m = OutboxMessage.objects.create(
            owner=owner, account=account, status="sent", eml="outbox/x.eml",
            envelope_from="owner@example.com", message_id=f"<{subject}@x>", subject=subject,
            to_display=to,
        )
        Recipient.objects.bulk_create(
            Recipient(message=m, address=a, kind=kind) for a, kind in recipients
        )
        texts[m.pk] = [subject, to, *(a for a, _kind in recipients)]
    return texts


def _found(owner, term: str) -> set[int]:
    return set(search.search(OutboxMessage.objects.filter(owner=owner), term)
               .values_list("pk", flat=True))


def _expected(texts, term: str) -> set[int]:
    return {pk for pk, fields in texts.items() if any(term.lower() in f.lower() for f in fields)}


def test_it_finds_what_a_substring_search_finds(owner):
    texts = _make(owner, make_account(owner))
    for term in TERMS:
        assert _found(owner, term) == _expected(texts, term), term
    # The cases the reference covers, spelled out.
    subjects = lambda term: {OutboxMessage.objects.get(pk=pk).subject for pk in _found(owner, term)}  # noqa: E731
    assert subjects("hidden@example.net") == {"Hello"}  # Bcc: only in the recipient rows
    assert subjects("ÉLAN") == {"élan vital"}
    assert subjects("josé@EXÁMPLE") == {"Grüße über alles"}
    assert subjects("50%") == {"50% off"} and subjects("a_b") == {"a_b test"}


def test_it_only_finds_the_owners_mail(owner, stranger):
    _make(stranger, make_account(stranger))
    assert _found(owner, "invoice") == set()
    assert len(_found(stranger, "invoice")) == 1


def test_the_index_follows_changes(owner):
    _make(owner, make_account(owner))
    message = OutboxMessage.objects.get(subject="INVOICE 42")
    OutboxMessage.objects.filter(pk=message.pk).update(subject="Receipt 43")
    assert _found(owner, "invoice") == set() and _found(owner, "receipt") == {message.pk}
    OutboxMessage.objects.filter(pk=message.pk).update(status="failed")  # not a searched column
    assert _found(owner, "receipt") == {message.pk}

    hello = OutboxMessage.objects.get(subject="Hello")
    Recipient.objects.filter(address="hidden@Example.NET").update(address="seen@example.net")
    assert _found(owner, "hidden@") == set() and _found(owner, "seen@example") == {hello.pk}
    Recipient.objects.filter(address="seen@example.net").delete()
    assert _found(owner, "seen@example") == set()
    hello.delete()
    assert _found(owner, "amy@") == set()


def test_the_search_uses_its_index(owner):
    _make(owner, make_account(owner))
    qs = search.search(OutboxMessage.objects.filter(owner=owner), "user4242@")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A handful of rows make a sequential scan cheapest; ask whether the index fits.
            cursor.execute("SET LOCAL enable_seqscan = off")
        plan = qs.explain()
    if connection.vendor == "sqlite":
        assert "mailer_outbox_search VIRTUAL TABLE" in plan
        assert "mailer_recipient_search VIRTUAL TABLE" in plan
    else:
        assert "recipient_address_trgm" in plan and "outbox_subject_trgm" in plan


def test_a_migration_that_drops_the_triggers_gets_them_back(owner):
    if connection.vendor != "sqlite":
        # Only SQLite copies a table (dropping its triggers) to alter it: nothing to repair.
        assert search.repair(connection) is False
        return
    texts = _make(owner, make_account(owner))
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER mailer_recipient_search_ai")
    late = OutboxMessage.objects.get(subject="Minutes")
    Recipient.objects.create(message=late, address="late@example.org")  # missed by the index
    assert search.repair(connection) is True
    assert _found(owner, "late@example") == {late.pk}
    assert search.repair(connection) is False  # intact now
    assert _found(owner, "cc-only") == _expected(texts, "cc-only")
