"""The main path in a real browser, against the live server, a real Celery worker and an
aiosmtpd server with STARTTLS and AUTH: sign in, add an account, test the connection,
compose with two attachments, send, watch the status reach "sent" without reloading,
download the .eml; a rejected recipient shows as failed with the reason, a deferred one
shows its next attempt. Screenshots of the main pages go to test-output/screenshots/."""

from __future__ import annotations

import re
from email import message_from_bytes

import pytest
from playwright.sync_api import expect

from mailer import services
from mailer.models import OutboxMessage, UserPreferences
from tests.webui.browser import screenshot, sign_in
from tests.webui.conftest import PASSWORD, make_account, make_draft, make_user
from tests.workers import celery_worker

pytestmark = pytest.mark.browser

SERVER_PASSWORD = "smtp-Pa55word-for-test"


@pytest.fixture
def smtp(smtp_server_factory):
    server = smtp_server_factory(security="starttls", accounts={"owen": SERVER_PASSWORD})
    # Postfix's own words for an unknown mailbox, a greylisting and a relay refusal.
    server.handler.reply_at("rcpt", "550 5.1.1 <nobody@example.org>: Recipient address "
                            "rejected: User unknown in local recipient table",
                            address="nobody@example.org")
    server.handler.reply_at("rcpt", "450 4.2.0 <later@example.org>: Recipient address "
                            "rejected: Greylisted, see http://postgrey.schweikert.ch/help/",
                            address="later@example.org")
    for address in ("ann@elsewhere.example", "bob@elsewhere.example"):
        server.handler.reply_at("rcpt", f"554 5.7.1 <{address}>: Relay access denied",
                                address=address)
    return server


@pytest.fixture
def worker(transactional_db):
    # Beat sweeps every second: a message held for undo becomes due without a wake-up.
    with celery_worker(beat=True, env={"MAILROOM_SWEEP_SECONDS": "1"}) as running:
        yield running


def test_it_adds_an_account_sends_with_attachments_and_shows_it_sent(page, smtp, worker, tmp_path):
    owner = make_user("owen")
    UserPreferences.objects.create(user=owner, hold_seconds=2)
    # As `up` makes it: the Local sink, the default until a real account exists.
    make_account(owner, label="Local sink", host="127.0.0.1", port=1, security="none",
                 username="", auth_mechanism="none", is_local_sink=True, is_default=True)
    page.goto("/login/")
    screenshot(page, "login")
    sign_in(page, "owen", PASSWORD)

    page.goto("/accounts/new/")
    page.get_by_label("Name of this account").fill("Work")
    page.get_by_label("From name").fill("Owen Owner")
    page.get_by_label("From address").fill("owen@example.com")
    page.get_by_label("Host").fill(smtp.host)
    page.get_by_label("Port").fill(str(smtp.port))
    page.get_by_label("Security").select_option("starttls")
    page.get_by_label("Username").fill("owen")
    page.get_by_label("Password or app password").fill(SERVER_PASSWORD)
    page.locator("summary").click()
    page.get_by_label("Extra trusted CA certificate").fill(smtp.ca_pem)
    screenshot(page, "account-form")
    page.get_by_role("button", name="Add account").click()
    page.get_by_role("button", name="Test connection").click()
    # The worker runs the check; the page shows it waiting, then the result, by itself.
    expect(page.locator("#check-result")).to_contain_text("It works.", timeout=30_000)
    expect(page.locator("#caps-h + p")).to_contain_text("Seen")  # the reload after it
    page.locator("#check-result summary").click()
    transcript = page.locator("#check-result pre").inner_text()
    assert "STARTTLS" in transcript and "AUTH" in transcript
    assert SERVER_PASSWORD not in page.content()
    screenshot(page, "account-tested")

    report = tmp_path / "report.txt"
    report.write_text("the report\n")
    page.goto("/compose/")
    # The first real account took over as the default: real mail does not go to the sink.
    assert page.get_by_label("From", exact=True).locator("option:checked").inner_text() \
        .startswith("Work")
    # A reserved test domain is a valid address: the server decides what exists.
    page.get_by_label("To", exact=True).fill("alice@example.org, Bob <bob@example.test>")
    page.get_by_label("Subject").fill("Figures for Q3")
    page.get_by_label("Message").fill("Hello,\n\nthe figures are attached.\n")
    assert page.locator("[data-attachment-reminder]").is_visible()  # mentions one, has none
    page.locator("[data-saved-indicator]", has_text=re.compile("^Saved")).wait_for()  # autosave
    assert page.evaluate("location.pathname").startswith("/drafts/")  # its own address now
    page.set_input_files("#id_attachments", [str(report)])  # chosen...
    page.locator("li[data-attachment]").first.wait_for()
    dropped = page.evaluate_handle("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["a,b\\n1,2\\n"], "figures.csv", {type: "text/csv"}));
        return data;
    }""")
    page.dispatch_event("[data-dropzone]", "drop", {"dataTransfer": dropped})  # ...and dropped
    page.locator("li[data-attachment]").nth(1).wait_for()
    assert not page.locator("[data-attachment-reminder]").is_visible()
    screenshot(page, "compose")

    page.locator("#id_body_text").focus()
    page.keyboard.press("Control+Enter")
    page.wait_for_url("**/messages/*/")
    loads = []
    page.on("load", lambda _page: loads.append(1))
    screenshot(page, "message-held")
    undo = page.locator("[data-undo-until]")
    if undo.count():  # the 2 s hold may be over already on a slow machine
        assert int(page.locator("[data-undo-seconds]").inner_text()) <= 2
    try:
        page.locator("#message-status", has_text="Sent").wait_for(timeout=20_000)
    except Exception:
        print("WORKERLOG", worker.log[-6000:])
        raise
    assert not loads, "the page reloaded instead of updating in place"
    screenshot(page, "message-sent")
    assert [m.rcpt_tos for m in smtp.messages] == [["alice@example.org", "bob@example.test"]]
    # No notice left over from the click: the live status says it was sent.
    assert "Sending." not in page.locator("main").inner_text()
    expect(page.locator("#next-step")).to_have_text(re.compile("The server took it"))

    with page.expect_download() as download:
        page.get_by_role("link", name="Download .eml").click()
    eml = message_from_bytes(download.value.path().read_bytes())
    assert [p.get_filename() for p in eml.walk() if p.get_filename()] == [
        "report.txt",
        "figures.csv",
    ]

    page.goto("/outbox/")
    screenshot(page, "outbox")
    page.goto("/")
    screenshot(page, "home")
    assert not page.console_errors, page.console_errors


def _smtp_account(owner, smtp):
    account = make_account(owner, host=smtp.host, port=smtp.port, username="owen",
                           ca_certificate=smtp.ca_pem, is_default=True)
    account.set_secret(SERVER_PASSWORD)
    account.save()
    return account


def test_it_shows_a_rejected_and_a_deferred_recipient(page, smtp, worker):
    owner = make_user("owen")
    account = _smtp_account(owner, smtp)
    draft = make_draft(owner, account, subject="Mixed luck",
                       to="alice@example.org, bob@example.org, nobody@example.org, "
                          "later@example.org")
    message = services.send_draft(owner, draft, hold_seconds=0)
    sign_in(page, "owen", PASSWORD)
    page.goto(f"/messages/{message.pk}/")

    nobody = page.locator('tr[data-recipient="nobody@example.org"]')
    nobody.locator(".badge-failed").wait_for(timeout=20_000)
    assert "User unknown in local recipient table" in nobody.inner_text()
    later = page.locator('tr[data-recipient="later@example.org"]')
    later.locator(".badge-deferred").wait_for(timeout=20_000)
    assert "Greylisted" in later.inner_text()
    page.locator("#message-status", has_text="Deferred").wait_for()
    # The split, in the header: two went out, one failed for good, one waits.
    expect(page.locator("#message-split")).to_contain_text("2 sent · 1 failed · 1 waiting")
    waiting = page.locator("#waiting-to-retry")
    expect(waiting).to_contain_text("later@example.org")
    assert "nobody@example.org" not in waiting.inner_text()
    assert "Next attempt at" in page.locator("#next-step").inner_text()
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DEFERRED and message.next_attempt_at
    page.locator(".timeline details summary").first.click()
    screenshot(page, "message-partly-failed")

    page.goto("/outbox/")
    expect(page.locator(f"#message-row-{message.pk}")).to_contain_text(
        "2 sent · 1 failed · 1 waiting")
    page.get_by_label("Only with a failed recipient").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    assert not page.console_errors, page.console_errors


def test_a_message_refused_for_good_and_a_paused_account_promise_nothing(page, smtp, worker):
    from django.utils import timezone

    from mailer.models import SmtpAccount

    owner = make_user("owen")
    account = _smtp_account(owner, smtp)
    refused = services.send_draft(owner, make_draft(
        owner, account, subject="Relay", to="ann@elsewhere.example, bob@elsewhere.example"),
        hold_seconds=0)
    sign_in(page, "owen", PASSWORD)
    page.goto(f"/messages/{refused.pk}/")
    page.locator("#message-status", has_text="Failed").wait_for(timeout=20_000)
    live = page.locator("#live").inner_text()
    assert "try again later" not in live.lower() and "will try again" not in live.lower()
    assert "It will not be tried again by itself" in live
    assert live.count("Relay access denied") == 2  # once for each recipient
    screenshot(page, "message-failed")

    waiting = services.send_draft(owner, make_draft(owner, account, subject="Waits",
                                                    to="later@example.org"), hold_seconds=0)
    page.goto(f"/messages/{waiting.pk}/")
    page.locator("#message-status", has_text="Deferred").wait_for(timeout=20_000)
    SmtpAccount.objects.filter(pk=account.pk).update(
        paused_at=timezone.now(), paused_reason="The server refused the username or password.")
    page.reload()
    live = page.locator("#live").inner_text()
    assert "Nothing more will be tried while the account is paused" in live
    assert "Next attempt" not in live and "(in 0" not in live
    expect(page.get_by_role("button", name="Retry now")).to_have_count(0)
    screenshot(page, "message-paused")
    assert not page.console_errors, page.console_errors


def test_the_outbox_shows_its_rows_reach_sent_with_one_poll_for_the_page(page, smtp, worker):
    owner = make_user("owen")
    account = _smtp_account(owner, smtp)
    held = [services.send_draft(owner, make_draft(owner, account, subject=f"Live {i}",
                                                  to="alice@example.org"), hold_seconds=3)
            for i in range(3)]
    sign_in(page, "owen", PASSWORD)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto("/outbox/")
    loads = []
    page.on("load", lambda _page: loads.append(1))
    assert page.locator("#outbox-live[hx-get]").count() == 1

    for message in held:
        page.locator(f'#message-row-{message.pk}[data-status="sent"]').wait_for(timeout=30_000)
        expect(page.locator(f"#message-row-{message.pk} .badge")).to_have_text("Sent")
    assert not loads, "the page reloaded instead of updating in place"
    polls = [url for url in requests if "/outbox/live/" in url]
    # One request per interval for the whole page, carrying every row still in flight.
    assert polls
    assert polls[0].endswith("ids=" + ",".join(str(m.pk) for m in reversed(held)))
    expect(page.locator("#outbox-live")).not_to_have_attribute("hx-get", re.compile("."))
    screenshot(page, "outbox-live")
    assert not page.console_errors, page.console_errors


def test_it_undoes_a_send_within_the_hold(page, transactional_db):
    owner = make_user("owen")
    UserPreferences.objects.create(user=owner, hold_seconds=30)
    account = make_account(owner, is_default=True)
    draft = make_draft(owner, account, subject="Not yet", files=[("plan.txt", b"the plan")])
    sign_in(page, "owen", PASSWORD)
    page.goto(f"/drafts/{draft.pk}/")
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url("**/messages/*/")
    seconds = page.locator("[data-undo-seconds]")
    first = int(seconds.inner_text())
    expect(seconds).to_have_text(str(first - 1))  # counting down (the CSP forbids eval:
    # Playwright's wait_for_function cannot run here, which is the point)
    page.get_by_role("button", name="Undo").click()
    page.wait_for_url("**/drafts/*/")
    assert page.get_by_label("Subject").input_value() == "Not yet"
    assert page.locator("li[data-attachment]").inner_text().startswith("plan.txt")
    assert not OutboxMessage.objects.exists()
    assert not page.console_errors, page.console_errors
