"""Repeated wrong passwords lock sign-in for that user name for a while (429), with words
that say what to do; a right password before the limit signs in and resets the count."""

from tests.webui.conftest import PASSWORD
from webui import throttle


def test_it_locks_a_user_name_after_too_many_failures(client, owner):
    for _ in range(throttle.MAX_FAILURES_PER_USERNAME):
        response = client.post("/login/", {"username": "owen", "password": "wrong"})
        assert response.status_code == 200
        assert b"do not match" in response.content
    response = client.post("/login/", {"username": "owen", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_it_signs_in_and_resets_the_count(client, owner):
    for _ in range(throttle.MAX_FAILURES_PER_USERNAME - 1):
        client.post("/login/", {"username": "owen", "password": "wrong"})
    response = client.post("/login/", {"username": "owen", "password": PASSWORD})
    assert response.status_code == 302
    client.logout()
    client.post("/login/", {"username": "owen", "password": "wrong"})
    response = client.post("/login/", {"username": "owen", "password": PASSWORD})
    assert response.status_code == 302
