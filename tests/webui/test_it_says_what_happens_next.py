"""Every state's words match what the outbox will actually do next (issue 11, points 2, 3
and 5): the split of a mixed result, only waiting recipients under "waiting to retry", no
"try again" for what will not be tried, no "Retry now" or countdown for a paused account,
and no stale "Sending." notice. Deliveries are real, to a scripted loopback server with
Postfix's replies."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from mailer import delivery, progress, services
from mailer.models import OutboxMessage, SmtpAccount
from tests.mailer.base import make_account, send
from tests.mailer.servers import ScriptedSink

FOUR = "ann@example.org, bob@example.org, nobody@example.org, later@example.org"


@pytest.fixture
def server():
    with ScriptedSink() as srv:
        yield srv


@pytest.fixture
def sink_account(owner, server):
    return make_account(owner, server, label="Relay")


@pytest.fixture(autouse=True)
def _fresh_connections():
    yield
    delivery.connections.close_all()


def _page(client, message) -> str:
    """The message page, white space folded, without the raw SMTP transcripts (the
    conversation itself, which of course has every reply in it)."""
    page = re.sub(r"\s+", " ", client.get(f"/messages/{message.pk}/").content.decode())
    return re.sub(r'<pre class="transcript">.*?</pre>', "", page)


def _mixed(owner, account, server) -> OutboxMessage:
    server.script.rcpt["nobody@example.org"] = ["550 5.1.1 <nobody@example.org>: User unknown"]
    server.script.rcpt["later@example.org"] = ["450 4.2.0 <later@example.org>: Recipient "
                                               "address rejected: Greylisted"]
    message = send(owner, account, to=FOUR)
    assert delivery.deliver(message.pk) == "partial"
    message.refresh_from_db()
    return message


def test_a_mixed_result_shows_its_split_and_only_the_waiting(owner, owner_client, sink_account,
                                                             server):
    message = _mixed(owner, sink_account, server)
    assert message.status == "deferred"
    page = _page(owner_client, message)
    assert "2 sent · 1 failed · 1 waiting" in page
    waiting = page[page.index('id="waiting-to-retry"'):]
    waiting = waiting[:waiting.index("</div>")]
    assert "later@example.org" in waiting and "nobody@example.org" not in waiting
    assert "1 recipient was refused for good and will not be tried again" in page
    assert "Next attempt at" in page and "Retry now" in page
    # Each recipient's explanation once: the server's words for the unknown mailbox appear
    # in its row and nowhere else on the page (not joined into a paragraph above).
    assert page.count("User unknown") == 1 and page.count("Greylisted") == 1

    history = re.sub(r"\s+", " ", owner_client.get("/outbox/").content.decode())
    row = history[history.index(f'id="message-row-{message.pk}"'):]
    assert "2 sent · 1 failed · 1 waiting" in row[:row.index("</tr>")]


def test_the_history_finds_messages_with_a_failed_recipient(owner, owner_client, sink_account,
                                                            server):
    mixed = _mixed(owner, sink_account, server)
    clean = send(owner, sink_account, to="ann@example.org")
    assert delivery.deliver(clean.pk) == "sent"
    response = owner_client.get("/outbox/?failed_recipients=on")
    assert [m.pk for m in response.context["page"].object_list] == [mixed.pk]
    tabs = {key: count for key, _label, count in response.context["tabs"]}
    assert tabs["all"] == 1 and tabs["deferred"] == 1 and tabs["sent"] == 0


def test_every_recipient_refused_for_good_promises_no_retry(owner, owner_client, sink_account,
                                                            server):
    for address in ("ann@example.org", "bob@example.org"):
        server.script.rcpt[address] = [f"554 5.7.1 <{address}>: Relay access denied"]
    message = send(owner, sink_account, to="ann@example.org, bob@example.org")
    assert delivery.deliver(message.pk) == "failed"
    message.refresh_from_db()
    page = _page(owner_client, message)
    assert message.status == "failed" and message.next_attempt_at is None
    assert "will try again" not in page.lower() and "try again later" not in page.lower()
    assert "It will not be tried again by itself" in page
    assert page.count("Relay access denied") == 2  # once per recipient


def test_a_paused_accounts_message_offers_no_retry_and_no_countdown(owner, owner_client,
                                                                    sink_account, server):
    message = _mixed(owner, sink_account, server)
    SmtpAccount.objects.filter(pk=sink_account.pk).update(
        paused_at=timezone.now(), paused_reason="The server refused the username or password.")
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    page = _page(owner_client, message)
    assert "Retry now" not in page and "(in 0" not in page and "Next attempt" not in page
    assert "Nothing more will be tried while the account is paused" in page
    assert "waits until you resume it" not in page
    message.refresh_from_db()
    with pytest.raises(services.ActionNotAllowed, match="is paused"):
        services.retry_now(owner, message)


def test_the_sending_notice_does_not_outlive_the_result(owner, owner_client, sink_account,
                                                        server):
    from tests.webui.conftest import make_draft

    draft = make_draft(owner, sink_account, to="ann@example.org")
    response = owner_client.post(f"/drafts/{draft.pk}/", {
        "account": sink_account.pk, "to": draft.to, "subject": draft.subject,
        "body_text": "Hi", "action": "send", "confirm_no_attachment": "on"}, follow=True)
    first = re.sub(r"\s+", " ", response.content.decode())
    assert "Sending." not in first and "It goes out in a moment, unless you undo it." in first
    message = OutboxMessage.objects.get(owner=owner)
    OutboxMessage.objects.filter(pk=message.pk).update(status="queued", hold_until=None)
    assert delivery.deliver(message.pk) == "sent"
    live = owner_client.get(f"/messages/{message.pk}/status/").content.decode()
    assert "The server took it for delivery" in live and "Sending" not in live


@pytest.mark.parametrize("status", ["queued", "scheduled", "sending", "deferred", "sent",
                                    "failed", "unknown", "cancelled"])
@pytest.mark.parametrize("paused", [False, True])
def test_each_states_words_match_the_scheduled_action(status, paused, owner, sink_account):
    """Walk every state: a retry the words name is scheduled, "Retry now" is offered only
    where the service allows it, and a paused account's mail promises nothing."""
    message = send(owner, sink_account, to="ann@example.org")
    due = timezone.now() + timedelta(minutes=30)
    OutboxMessage.objects.filter(pk=message.pk).update(
        status=status, next_attempt_at=due if status in ("deferred", "scheduled") else None,
        hold_until=None)
    if status == "failed":
        message.recipients.update(status="failed", code=550)
    if status == "sent":
        message.recipients.update(status="accepted", code=250)
    SmtpAccount.objects.filter(pk=sink_account.pk).update(
        paused_at=timezone.now() if paused else None)
    message = OutboxMessage.objects.select_related("account").get(pk=message.pk)
    step = progress.next_step(message, list(message.recipients.all()))
    waiting_state = status in ("queued", "scheduled", "deferred")
    if paused and waiting_state:
        assert step.paused and not step.can_retry_now and step.retry_at is None
        assert "paused" in step.words and "Next attempt" not in step.words
    if step.retry_at is not None:
        assert status == "deferred" and not paused and step.retry_at == message.next_attempt_at
        assert "Next attempt" in step.words
    if "try again" in step.words.lower() or "next attempt" in step.words.lower():
        assert step.retry_at is not None
    try:
        services.retry_now(owner, message)
        allowed = True
    except services.ActionNotAllowed:
        allowed = False
    assert step.can_retry_now == allowed or (step.can_retry_now is False and status in
                                             ("queued", "scheduled")), (status, paused)


def test_mail_through_the_local_sink_is_labelled(owner, owner_client, sink_account):
    SmtpAccount.objects.filter(pk=sink_account.pk).update(is_local_sink=True)
    message = send(owner, sink_account, to="ann@example.org")
    page = _page(owner_client, message)
    assert "Through the Local sink:" in page and "delivers nothing to anyone" in page
    SmtpAccount.objects.filter(pk=sink_account.pk).update(is_local_sink=False)
    assert "Through the Local sink:" not in _page(owner_client, message)


def test_times_read_without_a_double_period(owner, owner_client, sink_account):
    at = timezone.now().replace(hour=20, minute=36)
    SmtpAccount.objects.filter(pk=sink_account.pk).update(paused_at=at, paused_reason="Bad login.")
    page = re.sub(r"\s+", " ", owner_client.get(f"/accounts/{sink_account.pk}/").content.decode())
    shown = timezone.localtime(at).strftime("%Y-%m-%d %H:%M")
    assert f"(since {shown})" in page
    assert "p.m." not in page and "a.m." not in page and ".." not in page.replace("...", "")


def test_a_paused_account_offers_no_test_message(owner, owner_client, sink_account):
    SmtpAccount.objects.filter(pk=sink_account.pk).update(paused_at=timezone.now())
    page = owner_client.get(f"/accounts/{sink_account.pk}/").content.decode()
    assert "Send a test message" not in page and "Test connection" in page
    sink_account.refresh_from_db()
    with pytest.raises(services.ActionNotAllowed, match="paused"):
        services.send_test_message(owner, sink_account)
    SmtpAccount.objects.filter(pk=sink_account.pk).update(paused_at=None)
    assert "Send a test message" in owner_client.get(f"/accounts/{sink_account.pk}/").content \
        .decode()
