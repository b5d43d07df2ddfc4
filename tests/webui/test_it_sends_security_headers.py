"""Every page carries a CSP without inline scripts or styles and refuses to be framed; a
wrong address shows the site's own 404 page."""


def test_it_sends_a_strict_content_security_policy(owner_client):
    response = owner_client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    body = response.content.decode()
    assert "<script>" not in body and " onclick=" not in body and "style=" not in body
    assert "/static/django_htmx/htmx-2.min.js" in body  # htmx from the django-htmx package


def test_it_shows_its_own_404_page(owner_client):
    response = owner_client.get("/messages/999999/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_it_keeps_no_copy_of_any_authenticated_page(owner, owner_client, account, draft, message):
    """Every page with a user's data (message, outbox, compose, drafts, accounts, the live
    polls and downloads) says Cache-Control: no-store, not only /login/."""
    from tests.webui.test_it_renders_every_page import _pages

    for url in _pages(account, draft, message):
        response = owner_client.get(url)
        assert response.status_code == 200, url
        assert "no-store" in response.get("Cache-Control", ""), url
        assert "private" in response["Cache-Control"], url
