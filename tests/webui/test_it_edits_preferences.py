"""Preferences: each user sets their own undo window (issue 4: default 10 s, 0 = off)."""

import pytest

from mailer import services
from mailer.models import UserPreferences
from tests.webui.conftest import make_draft


def test_it_shows_the_default_undo_window(owner_client, owner):
    response = owner_client.get("/preferences/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="hold_seconds"' in body and 'value="10"' in body
    assert "0 sends at once" in body


def test_zero_turns_undo_off_for_this_user_only(owner_client, owner, stranger, account):
    response = owner_client.post("/preferences/", {"hold_seconds": "0"}, follow=True)
    assert "messages go at once, with no undo" in response.content.decode()
    assert UserPreferences.for_user(owner).hold_seconds == 0
    assert UserPreferences.for_user(stranger).hold_seconds == 10
    message = services.send_draft(owner, make_draft(owner, account))
    assert message.status == "queued" and message.hold_until is None


def test_a_longer_window_holds_longer(owner_client, owner, account):
    owner_client.post("/preferences/", {"hold_seconds": "30"})
    message = services.send_draft(owner, make_draft(owner, account))
    assert message.status == "scheduled"
    assert 29 <= (message.hold_until - message.created_at).total_seconds() <= 31


@pytest.mark.parametrize(("value", "error"), [
    ("-1", "greater than or equal to 0"),
    ("3600", "at most 600 seconds"),
    ("soon", "Enter a whole number"),
])
def test_it_says_what_is_wrong_next_to_the_field(owner_client, owner, value, error):
    response = owner_client.post("/preferences/", {"hold_seconds": value})
    assert response.status_code == 400 and error in response.content.decode()
    assert UserPreferences.for_user(owner).hold_seconds == 10


@pytest.mark.django_db
def test_it_needs_a_login(client):
    response = client.get("/preferences/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
