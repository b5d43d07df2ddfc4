"""Live updates: a history page asks for news with ONE poll for all its rows still in
flight (htmx out-of-band swaps), a message page with one poll for itself; once nothing
is in flight they stop asking. Without JavaScript the pages are complete as served."""

import re

from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailer.models import OutboxMessage
from tests.webui.conftest import make_account, make_many, make_message, make_user


def _poller(body: str) -> str:
    return re.search(r'<div id="outbox-live"[^>]*>', body).group(0)


def test_the_list_polls_once_for_its_in_flight_rows(owner, owner_client, account):
    waiting = [make_message(owner, account, subject=f"Waiting {i}") for i in range(3)]
    done = make_message(owner, account, status="failed", subject="Done")
    body = owner_client.get("/outbox/").content.decode()
    assert body.count("hx-trigger") == 1  # one poll for the page, none per row
    ids = ",".join(str(m.pk) for m in reversed(waiting))  # newest first, as listed
    assert f'hx-get="/outbox/live/?ids={ids}"' in _poller(body)
    assert 'hx-trigger="every 2s"' in _poller(body)
    assert str(done.pk) not in _poller(body)
    assert "row/" not in body


def test_the_list_does_not_poll_when_nothing_is_in_flight(owner, owner_client, account):
    make_message(owner, account, status="sent")
    body = owner_client.get("/outbox/").content.decode()
    assert "hx-trigger" not in body and "hx-get" not in _poller(body)


def test_the_poll_returns_each_row_out_of_band_and_narrows_to_what_is_still_in_flight(
        owner, owner_client, account):
    first, second = (
        make_message(owner, account, subject="First"),
        make_message(owner, account, subject="Second"),
    )
    OutboxMessage.objects.filter(pk=first.pk).update(status="sent")
    body = owner_client.get(f"/outbox/live/?ids={first.pk},{second.pk}").content.decode()
    for m, status in ((first, "sent"), (second, "queued")):
        assert re.search(
            rf'<tr id="message-row-{m.pk}" data-status="{status}" hx-swap-oob="true">', body
        )
    assert f'hx-get="/outbox/live/?ids={second.pk}"' in _poller(body)

    OutboxMessage.objects.filter(pk=second.pk).update(status="sent")
    body = owner_client.get(f"/outbox/live/?ids={second.pk}").content.decode()
    assert 'data-status="sent" hx-swap-oob="true"' in body and "Sent" in body
    assert "hx-get" not in _poller(body)  # final: the poller stops


def test_the_poll_costs_the_same_queries_for_one_row_or_fifty(owner, owner_client, account):
    make_many(owner, account, 49, status="queued")
    ids = list(OutboxMessage.objects.values_list("pk", flat=True))
    counts = []
    for chosen in (ids[:1], ids):
        with CaptureQueriesContext(connection) as queries:
            response = owner_client.get(f"/outbox/live/?ids={','.join(map(str, chosen))}")
        assert response.content.decode().count('hx-swap-oob="true"') == len(chosen)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_poll_ignores_other_users_messages_and_bad_ids(owner, owner_client, account):
    stranger = make_user("stranger")
    theirs = make_message(stranger, make_account(stranger), subject="Not yours")
    body = owner_client.get(f"/outbox/live/?ids={theirs.pk}").content.decode()
    assert "Not yours" not in body and f"message-row-{theirs.pk}" not in body
    body = owner_client.get("/outbox/live/?ids=1,x").content.decode()
    assert "message-row" not in body and "hx-get" not in _poller(body)


def test_the_message_page_polls_until_final(owner, owner_client, account):
    message = make_message(owner, account)  # queued
    live = owner_client.get(f"/messages/{message.pk}/status/").content.decode()
    assert f'hx-get="/messages/{message.pk}/status/"' in live and 'hx-trigger="every 2s"' in live

    OutboxMessage.objects.filter(pk=message.pk).update(status="sent")
    live = owner_client.get(f"/messages/{message.pk}/status/").content.decode()
    assert "hx-trigger" not in live and 'data-status="sent"' in live
    # The history's poll shows the row final, and stops asking.
    row = owner_client.get(f"/outbox/live/?ids={message.pk}").content.decode()
    assert f'id="message-row-{message.pk}" data-status="sent"' in row and ">Sent<" in row
    assert "hx-trigger" not in row
