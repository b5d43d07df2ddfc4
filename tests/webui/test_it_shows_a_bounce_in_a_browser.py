"""Past the first hop, in a real browser (Chromium) against the live server, a real Celery
worker with beat, a real Postfix (tests/postfix_server.py) and a real Dovecot: a user adds
an account with IMAP, tests it (IMAP's folders shown), sends to one good and one bouncing
address, and within the poll interval sees the second recipient turn "Bounced" with the
remote server's words; the message is in their Sent folder once."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from mailer.models import OutboxMessage, UserPreferences
from tests.webui.browser import screenshot, sign_in
from tests.webui.conftest import PASSWORD, make_user
from tests.workers import celery_worker

pytestmark = pytest.mark.browser

POLL = 2  # MAILROOM_REPORT_POLL_SECONDS for the worker


@pytest.fixture
def worker(transactional_db, postfix):
    env = {"MAILROOM_SWEEP_SECONDS": "1", "MAILROOM_REPORT_POLL_SECONDS": str(POLL)}
    with celery_worker(beat=True, env=env) as running:
        yield running


def test_a_bounce_turns_the_recipient_bounced_and_sent_keeps_one_copy(
    page, dovecot, postfix, next_hop, worker
):
    owner = make_user("owen")
    UserPreferences.objects.create(user=owner, hold_seconds=0)
    sign_in(page, "owen", PASSWORD)

    # The account: Postfix on loopback (no login), the IMAP side on the test's Dovecot.
    page.goto("/accounts/new/")
    page.get_by_label("Name of this account").fill("Mail")
    page.get_by_label("From address").fill("owen@example.test")
    page.get_by_label("Host").fill(postfix.host)
    page.get_by_label("Port").fill(str(postfix.port))
    page.get_by_label("Security").select_option("none")
    page.get_by_label("Login method").select_option("none")
    page.locator("summary").click()
    page.get_by_label("Extra trusted CA certificate").fill(dovecot.ca_pem)
    page.get_by_role("button", name="Add account").click()
    page.get_by_role("link", name="Set up IMAP").click()
    page.get_by_label("IMAP server").fill(dovecot.host)
    page.locator("#id_port").fill(str(dovecot.tls_port))
    page.get_by_label("Encryption").select_option("tls")
    page.get_by_label("IMAP username (optional)").fill("owen")
    page.get_by_label("IMAP password (optional)").fill(dovecot.users["owen"])
    screenshot(page, "imap-form")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("body")).to_contain_text("IMAP saved.")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#check-result")).to_contain_text("It works.", timeout=30_000)
    expect(page.locator("[data-imap-folders]")).to_contain_text("Sent (Sent)")
    expect(page.locator("[data-imap-caps]")).to_contain_text("UIDPLUS")
    assert dovecot.users["owen"] not in page.content()
    screenshot(page, "imap-tested")

    # Wait for the first poll, so that the reading starts before the mail goes out.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _polled():
        time.sleep(0.2)

    page.goto("/compose/")
    page.get_by_label("To", exact=True).fill("good@bounce.test, gone@bounce.test")
    page.get_by_label("Subject").fill("Quarterly numbers")
    page.get_by_label("Message").fill("Here they are.")
    page.get_by_role("button", name="Send", exact=True).click()
    # Sent, or already Bounced: Postfix and the poll can be quicker than the page.
    expect(page.locator("#message-status")).to_contain_text(re.compile("Sent|Bounced"),
                                                            timeout=30_000)
    message = OutboxMessage.objects.get(owner=owner)

    # The report comes back through Postfix and Dovecot; beat polls every POLL seconds.
    gone = page.locator('tr[data-recipient="gone@bounce.test"]')
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page.reload()
        if gone.locator(".badge-bounced").count():
            break
        time.sleep(1)
    expect(gone.locator(".badge-bounced")).to_have_text("Bounced")
    expect(gone).to_contain_text("the address does not exist there")
    expect(gone).to_contain_text("Recipient address rejected: User unknown")
    good = page.locator('tr[data-recipient="good@bounce.test"]')
    expect(good.locator(".badge-accepted")).to_be_visible()
    assert good.locator(".badge-bounced").count() == 0
    expect(page.locator("#message-status")).to_contain_text("Bounced")
    expect(page.locator("#sent-copy")).to_contain_text("Saved in “Sent”.")
    screenshot(page, "message-bounced")

    # The report downloads as it arrived; the history counts it under Bounced.
    with page.expect_download() as download:
        gone.get_by_role("link", name="the report").click()
    assert message.envid.encode() in open(download.value.path(), "rb").read()
    page.goto("/outbox/?tab=bounced")
    expect(page.locator(f"#message-row-{message.pk} .badge-bounced")).to_be_visible()

    copies = [m for m in dovecot.messages("owen", "Sent") if message.message_id.encode() in m]
    assert len(copies) == 1


def _polled() -> bool:
    from mailer.models import ImapSettings

    return ImapSettings.objects.filter(polled_at__isnull=False).exists()
