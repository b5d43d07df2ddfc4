"""Every form POST without the CSRF token is refused with 403 and changes nothing."""

from django.test import Client

from mailer.models import Draft, SmtpAccount
from tests.webui.urls import object_post_urls, post_only_urls


def test_it_refuses_every_post_without_a_csrf_token(owner, account, draft, message):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    urls = set(post_only_urls(account, draft, message) + object_post_urls(account, draft, message))
    for url in sorted(urls | {"/compose/", "/accounts/new/"}):
        response = client.post(url, {"subject": "forged", "label": "forged"})
        assert response.status_code == 403, url
        assert b"This form has expired" in response.content
    assert SmtpAccount.objects.filter(owner=owner).count() == 1
    assert not Draft.objects.filter(subject="forged").exists()


def test_it_refuses_a_sign_in_without_a_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "owen", "password": "whatever"})
    assert response.status_code == 403
