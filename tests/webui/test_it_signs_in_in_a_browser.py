""""Sign in with …" in a real browser (Chromium), against the live server, a real Celery
worker and the real test provider (django-oauth-toolkit in its own process, PKCE required,
2-second access tokens): account form → the provider's login and consent pages → back →
the account saved → test connection → a message sent through an SMTP server that checks
each XOAUTH2 token with the provider. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from mailer.models import OutboxMessage, SmtpAccount
from tests.mailer.servers import ScriptedSink
from tests.oauth import configure, provider_env, start_oauth_server
from tests.webui.browser import screenshot, sign_in
from tests.webui.conftest import PASSWORD, make_user
from tests.workers import celery_worker

pytestmark = pytest.mark.browser


@pytest.fixture
def idp(live_server, tmp_path):
    server = start_oauth_server(
        tmp_path, redirect_uris=[f"{live_server.url}/accounts/oauth/callback/"],
        users={"owen": {"email": "owen@example.test"}}, access_seconds=2,
    )
    yield server
    server.stop()


@pytest.fixture
def smtp(idp):
    with ScriptedSink(token_check=idp.token_check) as server:
        yield server


@pytest.fixture
def worker(transactional_db, idp, smtp):
    with celery_worker(env=provider_env(idp, smtp.port)) as running:
        yield running


def test_it_signs_in_at_the_provider_and_sends(page, idp, smtp, worker, settings, live_server):
    configure(settings, idp, smtp.port)  # the live server's side
    make_user("owen")
    missing = []  # Mailroom's own responses that failed (the provider's favicon is not ours)
    page.on("response", lambda r: r.status >= 400 and r.url.startswith(live_server.url)
            and missing.append(r.url))
    sign_in(page, "owen", PASSWORD)
    page.goto("/accounts/new/")
    page.get_by_role("button", name="Sign in with Test provider").click()

    # A worker prepares the sign-in; the page then sends the browser to the provider.
    page.wait_for_url(f"{idp.base}/**", timeout=30_000)
    page.get_by_label("Username").fill("owen")
    page.get_by_label("Password").fill(idp.users["owen"]["password"])
    page.get_by_role("button", name="Sign in").click()
    screenshot(page, "oauth-consent")
    page.get_by_role("button", name="Authorize").click()

    # Back at Mailroom: a worker exchanges the code; the account page follows.
    expect(page.locator(".messages, [role=status]").first).to_contain_text(
        "Signed in to Test provider as owen@example.test", timeout=30_000)
    account = SmtpAccount.objects.get(from_address="owen@example.test")
    assert page.url.endswith(f"/accounts/{account.pk}/")
    expect(page.get_by_text("signed in with Test provider as owen@example.test")).to_be_visible()
    screenshot(page, "oauth-account")

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#check-result")).to_contain_text("It works.", timeout=30_000)
    page.get_by_role("button", name="Send a test message").click()
    expect(page.locator("body")).to_contain_text("Sent", timeout=30_000)
    message = OutboxMessage.objects.get(account=account)
    assert message.status == "sent"
    assert [r.message_id for r in smtp.received] == [message.message_id]
    assert smtp.handler.login_attempts[-1] == ("XOAUTH2", "owen@example.test")
    # Under script-src 'self' the pages ran clean; the only console errors are the
    # provider's pages asking for a favicon it does not have.
    assert not missing, missing
    assert not [e for e in page.console_errors if "404" not in e], page.console_errors
