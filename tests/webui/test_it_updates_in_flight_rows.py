"""Rows and message pages still in flight ask for news (htmx polling); once final they
stop asking."""

from mailer.models import OutboxMessage
from tests.webui.conftest import make_message


def test_it_polls_while_in_flight_and_stops_when_final(owner, owner_client, account):
    message = make_message(owner, account)  # queued
    row = owner_client.get(f"/messages/{message.pk}/row/").content.decode()
    assert f'hx-get="/messages/{message.pk}/row/"' in row and 'hx-trigger="every 2s"' in row
    live = owner_client.get(f"/messages/{message.pk}/status/").content.decode()
    assert f'hx-get="/messages/{message.pk}/status/"' in live

    OutboxMessage.objects.filter(pk=message.pk).update(status="sent")
    row = owner_client.get(f"/messages/{message.pk}/row/").content.decode()
    assert "hx-trigger" not in row and "Sent" in row
    live = owner_client.get(f"/messages/{message.pk}/status/").content.decode()
    assert "hx-trigger" not in live and 'data-status="sent"' in live


def test_it_marks_in_flight_rows_in_the_list(owner, owner_client, account):
    waiting = make_message(owner, account, subject="Waiting")
    done = make_message(owner, account, status="failed", subject="Done")
    body = owner_client.get("/outbox/").content.decode()
    assert f'hx-get="/messages/{waiting.pk}/row/"' in body
    assert f'hx-get="/messages/{done.pk}/row/"' not in body
