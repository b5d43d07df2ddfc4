import time
from datetime import timedelta

import pytest
from django.utils import timezone

from mailer.models import OutboxMessage
from tests.mailer.base import send
from tests.mailer.pipeline import FAST
from tests.workers import celery_worker, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


def test_it_sends_scheduled_mail_at_its_time_not_before(owner, account, server):
    with celery_worker(beat=True, env=FAST):
        due = timezone.now() + timedelta(seconds=3)
        msg = send(owner, account, send_at=due)
        time.sleep(2)
        assert server.received == [] and OutboxMessage.objects.get(pk=msg.pk).status == "scheduled"
        wait_until(
            lambda: OutboxMessage.objects.get(pk=msg.pk).status == "sent", what="sent at its time"
        )
    msg.refresh_from_db()
    assert msg.sent_at >= due and len(server.received) == 1
