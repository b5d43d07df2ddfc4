"""Outbox and history: tabs with counts, search by recipient or subject, filter by account
and date, 50 per page, and a constant number of queries whatever the page size."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer.models import OutboxMessage
from tests.webui.conftest import make_account, make_many, make_message


def test_it_counts_by_status_and_shows_one_tab(owner, owner_client, account):
    make_message(owner, account, status="sent", subject="Delivered one")
    make_message(owner, account, status="failed", subject="Bounced one")
    make_message(owner, account, status="failed", subject="Bounced two")
    make_message(owner, account, subject="Waiting one")
    response = owner_client.get("/outbox/?tab=failed")
    tabs = dict((key, count) for key, _label, count in response.context["tabs"])
    assert tabs == {"all": 4, "waiting": 1, "sent": 1, "deferred": 0, "failed": 2,
                    "unknown": 0, "cancelled": 0, "bounced": 0}
    body = response.content.decode()
    assert "Bounced one" in body and "Bounced two" in body and "Delivered one" not in body


def test_it_searches_recipients_and_subjects(owner, owner_client, account):
    make_message(owner, account, subject="Invoice 42", to="zed@example.org")
    make_message(owner, account, subject="Hello", to="amy@example.org", bcc="hidden@example.net")
    make_message(owner, account, subject="Other", to="bob@example.org")
    assert _subjects(owner_client, "q=invoice") == ["Invoice 42"]
    assert _subjects(owner_client, "q=hidden@example") == ["Hello"]  # Bcc recipients too
    assert _subjects(owner_client, "q=nobody") == []
    assert _subjects(owner_client, "q=HIDDEN@Example") == ["Hello"]  # any case
    assert _subjects(owner_client, "q=voic") == ["Invoice 42"]  # any part of a word


def test_it_filters_by_account_and_date(owner, owner_client, account):
    other = make_account(owner, label="Other")
    make_message(owner, account, subject="From work")
    old = make_message(owner, other, subject="From other, old")
    OutboxMessage.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    assert _subjects(owner_client, f"account={account.pk}") == ["From work"]
    since = (timezone.localdate() - timedelta(days=2)).isoformat()
    assert _subjects(owner_client, f"date_from={since}") == ["From work"]
    until = (timezone.localdate() - timedelta(days=5)).isoformat()
    assert _subjects(owner_client, f"date_to={until}") == ["From other, old"]


def test_it_pages_by_fifty_with_constant_queries(owner, owner_client, account):
    make_many(owner, account, 59, status="sent")
    with CaptureQueriesContext(connection) as first:
        page1 = owner_client.get("/outbox/")
    first_count = len(first)  # read now: the next request clears the query log
    assert len(page1.context["page"].object_list) == 50
    assert "Page 1 of 2" in page1.content.decode()
    with CaptureQueriesContext(connection) as second:
        page2 = owner_client.get("/outbox/?page=2")
    assert len(page2.context["page"].object_list) == 10
    assert first_count == len(second)
    # session, user, tab counts, the page, the account filter's choices, the page's
    # recipients by outcome (one grouped query)
    assert len(second) == 6, [q["sql"] for q in second.captured_queries]


def _subjects(client, query):
    response = client.get(f"/outbox/?{query}")
    return [m.subject for m in response.context["page"].object_list]


def test_the_tab_counts_are_live(owner, owner_client, account):
    message = make_message(owner, account, status="deferred")
    assert _tabs(owner_client)["deferred"] == 1
    OutboxMessage.objects.filter(pk=message.pk).update(status="failed")  # a worker's change
    assert _tabs(owner_client) == {"all": 1, "waiting": 0, "sent": 0, "deferred": 0,
                                   "failed": 1, "unknown": 0, "cancelled": 0, "bounced": 0}
    owner_client.post(f"/messages/{message.pk}/retry/")  # the user's own action
    assert _tabs(owner_client)["waiting"] == 1


def test_the_tabs_count_a_send_at_once(owner, owner_client, account):
    assert _tabs(owner_client)["all"] == 0
    response = owner_client.post("/compose/", {
        "account": account.pk, "to": "alice@example.org", "subject": "Counted",
        "body_text": "Hello", "action": "send"})
    assert response.status_code == 302
    assert _tabs(owner_client) == {"all": 1, "waiting": 1, "sent": 0, "deferred": 0,
                                   "failed": 0, "unknown": 0, "cancelled": 0, "bounced": 0}
    assert _tabs(owner_client, f"account={account.pk}")["waiting"] == 1


def test_it_counts_under_every_filter(owner, owner_client, account):
    other = make_account(owner, label="Other")
    make_message(owner, account, status="sent", subject="Invoice 1")
    make_message(owner, account, status="failed", subject="Invoice 2")
    make_message(owner, other, status="failed", subject="Receipt")
    old = make_message(owner, other, status="sent", subject="Invoice old")
    OutboxMessage.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    since = (timezone.localdate() - timedelta(days=2)).isoformat()
    expected = {
        "": {"all": 4, "sent": 2, "failed": 2},
        f"account={other.pk}": {"all": 2, "sent": 1, "failed": 1},
        f"date_from={since}": {"all": 3, "sent": 1, "failed": 2},
        "q=invoice": {"all": 3, "sent": 2, "failed": 1},
        f"q=invoice&date_from={since}&account={account.pk}": {"all": 2, "sent": 1, "failed": 1},
    }
    for query, tabs in expected.items():
        counted = {key: n for key, n in _tabs(owner_client, query).items() if n}
        assert counted == tabs, query


def test_a_search_pages_through_its_matches(owner, owner_client, account):
    make_many(owner, account, 55, status="sent")
    failed = make_message(owner, account, status="failed")
    for message in OutboxMessage.objects.filter(owner=owner):
        OutboxMessage.objects.filter(pk=message.pk).update(subject=f"Batch {message.pk}")
    total = OutboxMessage.objects.filter(owner=owner).count()
    for term in ("batch", "b"):  # an indexed search; one too short for the index
        first = owner_client.get(f"/outbox/?q={term}")
        second = owner_client.get(f"/outbox/?q={term}&page=2")
        beyond = owner_client.get(f"/outbox/?q={term}&page=9")  # the last page, as ever
        failed_tab = owner_client.get(f"/outbox/?q={term}&tab=failed")
        pks = lambda r: [m.pk for m in r.context["page"].object_list]  # noqa: E731
        assert len(pks(first)) == 50 and len(pks(second)) == total - 50
        assert not set(pks(first)) & set(pks(second))
        assert pks(beyond) == pks(second)
        assert pks(failed_tab) == [failed.pk]
        assert first.context["page"].paginator.count == total
        assert {k: n for k, _l, n in first.context["tabs"]}["failed"] == 1


def _tabs(client, query=""):
    return {key: n for key, _label, n in client.get(f"/outbox/?{query}").context["tabs"]}
