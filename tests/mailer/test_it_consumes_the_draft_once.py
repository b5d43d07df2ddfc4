"""send_draft turns a draft into a queued message in one transaction with only the
statements it needs, and a draft is queued once: a second send of the same draft, or an
attachment that arrives while it is being sent, leaves nothing half done."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailer import services
from mailer.models import Attachment, Draft, OutboxMessage
from tests.mailer.base import make_account, make_draft


def _statements(queries) -> list[str]:
    """The first words of each statement, without the test's own savepoints."""
    kept = []
    for q in queries:
        sql = q["sql"]
        if "SAVEPOINT" in sql:
            continue
        verb = sql.split()[0]
        table = next(w for w in sql.replace('"', " ").split() if w.startswith("mailer_"))
        kept.append(f"{verb} {table}")
    return kept


def _stored_emls() -> set[Path]:
    return set((Path(settings.MEDIA_ROOT) / "outbox").glob("*.eml"))


@pytest.fixture
def account(owner):
    return make_account(owner)


def test_it_runs_only_the_statements_it_needs(owner, account):
    draft = make_draft(owner, account, to="a@example.org, b@example.org")
    with CaptureQueriesContext(connection) as queries:
        msg = services.send_draft(owner, draft, hold_seconds=0)
    assert _statements(queries) == [
        "SELECT mailer_attachment",  # build_from_draft: none, so none to move
        "INSERT mailer_outboxmessage",
        "INSERT mailer_recipient",
        "DELETE mailer_draft",
    ]
    assert msg.status == OutboxMessage.Status.QUEUED and msg.recipients.count() == 2
    assert draft.pk is None and not Draft.objects.exists()


def test_it_moves_the_attachments_with_one_update(owner, account):
    draft = make_draft(owner, account, attachments=[("a.txt", "text/plain", b"one"),
                                                    ("b.txt", "text/plain", b"two")])
    draft_pk = draft.pk
    with CaptureQueriesContext(connection) as queries:
        msg = services.send_draft(owner, draft, hold_seconds=0)
    assert _statements(queries) == [
        "SELECT mailer_attachment",
        "INSERT mailer_outboxmessage",
        "INSERT mailer_recipient",
        "UPDATE mailer_attachment",
        "DELETE mailer_draft",
    ]
    assert sorted(msg.attachments.values_list("filename", flat=True)) == ["a.txt", "b.txt"]
    assert not Attachment.objects.filter(draft_id=draft_pk).exists()
    assert not Draft.objects.filter(pk=draft_pk).exists()


def test_it_queues_a_draft_once_when_it_is_sent_twice(owner, account):
    # Two requests holding the same draft (a double click on Send): the second one finds
    # the draft gone and queues nothing.
    draft = make_draft(owner, account)
    same = Draft.objects.get(pk=draft.pk)
    first = services.send_draft(owner, draft, hold_seconds=0)
    files = _stored_emls()
    with pytest.raises(services.ActionNotAllowed, match="already been sent"):
        services.send_draft(owner, same, hold_seconds=0)
    assert list(OutboxMessage.objects.values_list("pk", flat=True)) == [first.pk]
    assert _stored_emls() == files  # the second attempt's file is removed again


@pytest.mark.django_db(transaction=True)
def test_it_sends_nothing_when_an_attachment_arrives_meanwhile(owner):
    account = make_account(owner)
    draft = make_draft(owner, account, subject="Report")
    # This request read the draft's attachments (none) before another tab added one; a
    # prefetch taken before the upload is that stale view, with real rows underneath.
    sending = Draft.objects.prefetch_related("attachments").get(pk=draft.pk)
    upload = make_draft(owner, account, attachments=[("late.pdf", "application/pdf", b"%PDF-1")])
    Attachment.objects.filter(draft=upload).update(draft=draft)
    files = _stored_emls()
    with pytest.raises(ValidationError) as err:
        services.send_draft(owner, sending, hold_seconds=0)
    assert "added to this draft while it was being sent" in err.value.message_dict["attachments"][0]
    assert not OutboxMessage.objects.exists()
    assert list(Draft.objects.get(pk=draft.pk).attachments.values_list("filename", flat=True)) == [
        "late.pdf"]
    assert _stored_emls() == files
