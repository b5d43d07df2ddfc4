"""Every page renders for its owner, and every page needs a login."""

import pytest

from tests.webui.conftest import make_message


def _pages(account, draft, message):
    return [
        "/", "/accounts/", "/accounts/new/", f"/accounts/{account.pk}/",
        f"/accounts/{account.pk}/edit/", "/compose/", "/drafts/", f"/drafts/{draft.pk}/",
        "/outbox/", "/outbox/?tab=failed&q=alice", f"/messages/{message.pk}/",
        f"/messages/{message.pk}/status/", f"/outbox/live/?ids={message.pk}",
        f"/messages/{message.pk}/body.html", f"/messages/{message.pk}/download.eml",
    ]


def test_it_renders_every_page_for_the_owner(owner, owner_client, account, draft, message):
    make_message(owner, account, status="failed", subject="Bounced")
    for url in _pages(account, draft, message):
        response = owner_client.get(url)
        assert response.status_code == 200, url


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_the_login_page(client, account, draft, message):
    for url in _pages(account, draft, message):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


def test_it_serves_the_login_page(client, db):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content
