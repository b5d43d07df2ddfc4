"""Undo send and send later are one mechanism (issue 4): a hold kept in the database
(``hold_until`` / ``next_attempt_at``), released by the sweeper, never by a Celery ETA.
Inside the hold the message comes back as the untouched draft; after it, it is too late
and the user is told so."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from mailer import delivery, services
from mailer.models import Attachment, OutboxMessage, UserPreferences
from tests.mailer.base import make_draft

PDF = ("notes.pdf", "application/pdf", b"%PDF-1.4 notes")


def test_undo_inside_the_hold_returns_the_draft(owner, account, server):
    draft = make_draft(owner, account, to="alice@example.org", cc="bob@example.org",
                       subject="Plans", body_text="See attached.", attachments=[PDF])
    msg = services.send_draft(owner, draft)  # the user's default hold: 10 s

    assert msg.status == "scheduled" and msg.hold_until is not None
    assert timedelta(seconds=9) < msg.hold_until - msg.created_at <= timedelta(seconds=11)
    assert delivery.deliver(msg.pk) is None  # no worker may take it during the hold

    back = services.undo_send(owner, msg)
    assert (back.to, back.cc, back.subject, back.body_text) == (
        "alice@example.org", "bob@example.org", "Plans", "See attached.")
    assert back.account == account
    [att] = back.attachments.all()
    assert (att.filename, att.file.read()) == ("notes.pdf", PDF[2])
    assert not OutboxMessage.objects.filter(pk=msg.pk).exists()
    assert Attachment.objects.count() == 1
    assert server.received == []


def test_after_the_hold_it_is_too_late_and_says_so(owner, account, server):
    msg = services.send_draft(owner, make_draft(owner, account))
    with time_machine.travel(timezone.now() + timedelta(seconds=11), tick=True):
        with pytest.raises(services.ActionNotAllowed, match="too late to undo"):
            services.undo_send(owner, msg)
        released = []
        delivery.sweep(enqueue=released.append)
        assert released == [msg.pk]
        assert delivery.deliver(msg.pk) == "sent"
    assert [r.message_id for r in server.received] == [msg.message_id]


def test_a_hold_of_zero_sends_at_once(owner, account):
    prefs = UserPreferences.for_user(owner)
    prefs.hold_seconds = 0
    prefs.save()
    msg = services.send_draft(owner, make_draft(owner, account))
    assert msg.status == "queued" and msg.hold_until is None
    with pytest.raises(services.ActionNotAllowed):
        services.undo_send(owner, msg)
    assert delivery.deliver(msg.pk) == "sent"


def test_send_later_is_the_same_hold_with_a_later_time(owner, account, server):
    at = timezone.now() + timedelta(hours=2)
    msg = services.send_draft(owner, make_draft(owner, account), send_at=at)
    assert msg.status == "scheduled" and msg.next_attempt_at == at
    assert delivery.sweep(enqueue=lambda pk: None).enqueued == []
    with time_machine.travel(at + timedelta(seconds=1), tick=True):
        released = []
        delivery.sweep(enqueue=released.append)
        assert released == [msg.pk] and delivery.deliver(msg.pk) == "sent"


def test_a_scheduled_send_can_be_taken_back_until_its_time(owner, account):
    at = timezone.now() + timedelta(hours=2)
    msg = services.send_draft(owner, make_draft(owner, account, subject="Later"), send_at=at)
    with time_machine.travel(at - timedelta(minutes=1), tick=True):
        assert services.undo_send(owner, msg).subject == "Later"


def test_only_the_owner_can_undo(owner, stranger, account):
    msg = services.send_draft(owner, make_draft(owner, account))
    with pytest.raises(services.NotFound):
        services.undo_send(stranger, msg)
    assert OutboxMessage.objects.get(pk=msg.pk).status == "scheduled"


def test_a_short_wake_up_releases_the_hold_without_a_full_sweep(owner, account, server):
    msg = services.send_draft(owner, make_draft(owner, account), hold_seconds=3)
    assert delivery.release_holds(enqueue=lambda pk: None) == []
    with time_machine.travel(timezone.now() + timedelta(seconds=4), tick=True):
        woken = []
        assert delivery.release_holds(enqueue=woken.append) == [msg.pk] == woken
        assert OutboxMessage.objects.get(pk=msg.pk).status == "queued"
        assert delivery.deliver(msg.pk) == "sent"


def test_beat_runs_the_short_wake_up(settings):
    from config.celery import app

    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["mailer.tasks.release_holds"] == settings.MAILROOM_RELEASE_SECONDS
    assert settings.MAILROOM_RELEASE_SECONDS < settings.MAILROOM_SWEEP_SECONDS
