from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from mailer import delivery, services
from mailer.models import Draft, OutboxMessage
from tests.mailer.base import make_draft


def test_it_returns_the_untouched_draft_inside_the_hold(owner, account):
    draft = make_draft(owner, account, to="a@example.org", cc="c@example.org", bcc="b@example.org",
                       subject="Oops", body_html="<p>x</p>",
                       attachments=[("a.txt", "text/plain", b"attached")])
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = services.send_draft(owner, draft, hold_seconds=10)
        assert not Draft.objects.filter(pk=draft.pk).exists()
    with time_machine.travel(start + timedelta(seconds=9), tick=False):
        back = services.undo_send(owner, msg)
    assert not OutboxMessage.objects.filter(pk=msg.pk).exists()
    assert (back.to, back.cc, back.bcc, back.subject, back.body_html) == (
        "a@example.org", "c@example.org", "b@example.org", "Oops", "<p>x</p>")
    assert back.account == account
    [att] = back.attachments.all()
    assert att.filename == "a.txt" and att.file.read() == b"attached"


def test_it_says_it_is_too_late_after_the_hold(owner, account, server):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = services.send_draft(owner, make_draft(owner, account), hold_seconds=10)
    with time_machine.travel(start + timedelta(seconds=11), tick=False):
        with pytest.raises(services.ActionNotAllowed, match="too late to undo"):
            services.undo_send(owner, msg)
        assert delivery.deliver(msg.pk) == "sent"


def test_it_uses_the_users_hold_preference_by_default(owner, account):
    from mailer.models import UserPreferences

    UserPreferences.objects.create(user=owner, hold_seconds=30)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        msg = services.send_draft(owner, make_draft(owner, account))
    assert msg.status == "scheduled" and msg.hold_until == start + timedelta(seconds=30)
