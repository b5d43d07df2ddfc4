"""A history row says when: sent at, "for" the scheduled time, or created at, and a
deferred message's next try, in the site's time zone (TIME_ZONE), the way the ``date``
filter showed them before the rows were rendered in Python (``{% outbox_row %}``)."""

from datetime import UTC, datetime

from mailer.models import OutboxMessage
from tests.webui.conftest import make_message

S = OutboxMessage.Status
NOON_UTC = datetime(2026, 7, 1, 12, 5, tzinfo=UTC)  # 14:05 in Berlin (summer time)


def _row(body: str, message) -> str:
    start = body.index(f'<tr id="message-row-{message.pk}"')
    return body[start:body.index("</tr>", start)]


def test_each_row_says_when_in_the_sites_time_zone(owner, account, owner_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    sent = make_message(owner, account, status=S.SENT, subject="Sent one")
    later = make_message(owner, account, status=S.SCHEDULED, subject="Later one")
    waiting = make_message(owner, account, status=S.DEFERRED, subject="Deferred one")
    OutboxMessage.objects.filter(pk=sent.pk).update(sent_at=NOON_UTC)
    OutboxMessage.objects.filter(pk=later.pk).update(scheduled_at=NOON_UTC)
    OutboxMessage.objects.filter(pk=waiting.pk).update(created_at=NOON_UTC,
                                                       next_attempt_at=NOON_UTC)

    body = owner_client.get("/outbox/").content.decode()

    assert ">2026-07-01 14:05</td>" in _row(body, sent)
    assert ">for 2026-07-01 14:05</td>" in _row(body, later)
    row = _row(body, waiting)
    assert "· next try 14:05</span>" in row and ">2026-07-01 14:05</td>" in row
    assert 'class="badge badge-deferred">Deferred</span>' in row
    assert f'<a href="/messages/{waiting.pk}/">Deferred one</a>' in row
