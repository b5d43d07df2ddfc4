"""Each rule of the delivery policy (issue 4), end to end: a real aiosmtpd server scripted
to answer with that code at greeting, AUTH, MAIL, RCPT, DATA or after the data, the real
client, and one ``delivery.deliver`` — then the message, its recipients and its account
are in the state the policy promises."""

from __future__ import annotations

import pytest
from django.utils import timezone

from mailer import delivery
from mailer.models import SmtpAccount
from tests.mailer.base import make_account, send, statuses
from tests.smtp_servers import MiniSMTP

PASSWORD = "the-right-password"
A, B, C = "alice@example.org", "bob@example.org", "carol@example.org"


@pytest.fixture
def auth_server(smtp_server_factory):
    return smtp_server_factory(accounts={"owner": PASSWORD}, auth_require_tls=False)


@pytest.fixture
def auth_account(owner, auth_server):
    return make_account(owner, auth_server, username="owner", secret=PASSWORD,
                        auth_mechanism="PLAIN", allow_plaintext_auth=True)


def deliver_one(owner, account, **fields):
    msg = send(owner, account, **fields)
    outcome = delivery.deliver(msg.pk)
    msg.refresh_from_db()
    account.refresh_from_db()
    return outcome, msg


@pytest.mark.parametrize(
    ("phase", "reply", "outcome", "status", "account_state"),
    [
        ("auth", "535 5.7.8 Username and Password not accepted", "paused", "deferred", "paused"),
        ("auth", "534 5.7.9 Please log in with your web browser", "paused", "deferred", "paused"),
        ("auth", "538 5.7.11 Encryption required", "paused", "deferred", "paused"),
        ("auth", "454 4.7.0 Too many login attempts, try later", "throttled", "deferred",
         "throttled"),
        ("mail", "421 4.7.0 Too many messages, slow down", "throttled", "deferred", "throttled"),
        ("mail", "451 4.3.0 Local problem, try later", "deferred", "deferred", "ok"),
        ("mail", "552 5.3.4 Message size exceeds fixed limit", "failed", "failed", "ok"),
        ("data", "451 4.3.0 Try again later", "deferred", "deferred", "ok"),
        ("data", "554 5.6.0 Message content rejected", "failed", "failed", "ok"),
        ("after-data", "552 5.3.4 Message too big for this server", "failed", "failed", "ok"),
        ("after-data", "450 4.7.1 Sending rate exceeded", "throttled", "deferred", "throttled"),
        ("after-data", "554 5.7.1 Spam detected", "failed", "failed", "ok"),
    ],
)
def test_it_acts_on_the_reply(owner, auth_server, auth_account, phase, reply, outcome, status,
                              account_state):
    auth_server.handler.reply_at(phase, reply, times=1)
    got, msg = deliver_one(owner, auth_account)

    assert (got, msg.status) == (outcome, status)
    code, enhanced, _ = reply.split(" ", 2)
    assert f"{code} {enhanced}" in msg.last_error  # the server's words are kept
    paused = auth_account.paused_at is not None
    throttled = auth_account.throttled_until is not None
    assert (paused, throttled) == (account_state == "paused", account_state == "throttled")
    assert auth_server.messages == []
    if status == "deferred":
        assert msg.next_attempt_at is not None and msg.wait_reason
    else:
        assert msg.next_attempt_at is None


def test_a_size_refusal_says_the_servers_limit_and_is_not_retried(owner, smtp_server_factory):
    server = smtp_server_factory(data_size_limit=5_000_000)
    server.handler.reply_at("after-data", "552 5.3.4 Message too big")
    account = make_account(owner, server)
    outcome, msg = deliver_one(owner, account)
    assert outcome == "failed"
    assert "larger than the server accepts (5.0 MB)" in msg.last_error
    assert delivery.sweep(enqueue=lambda pk: None).enqueued == []


def test_no_such_mailbox_fails_that_recipient_only(owner, smtp_server):
    smtp_server.handler.reply_at("rcpt", "550 5.1.1 No such user", address=B)
    account = make_account(owner, smtp_server)
    outcome, msg = deliver_one(owner, account, to=f"{A}, {B}, {C}")

    assert (outcome, msg.status) == ("partial", "sent")
    assert statuses(msg) == {A: "accepted", B: "failed", C: "accepted"}
    refused = msg.recipients.get(address=B)
    # The plain words and the server's own, apart (the page shows them side by side).
    assert "mailbox does not exist" in refused.reason and "No such user" not in refused.reason
    assert (refused.code, refused.enhanced, refused.text) == (550, "5.1.1", "No such user")
    assert [m.rcpt_tos for m in smtp_server.messages] == [[A, C]]


def test_too_many_recipients_go_in_another_transaction(owner, smtp_server):
    # The server takes two recipients per transaction and says 452 4.5.3 to the third.
    smtp_server.handler.reply_at("rcpt", "452 4.5.3 Too many recipients", address=C, times=1)
    account = make_account(owner, smtp_server)
    enqueued = []
    outcome, msg = deliver_one(owner, account, to=f"{A}, {B}, {C}")

    assert outcome == "partial" and msg.status == "deferred"
    assert statuses(msg) == {A: "accepted", B: "accepted", C: "pending"}
    # the rest is due at once, not after a backoff
    assert msg.next_attempt_at <= timezone.now()
    delivery.sweep(enqueue=enqueued.append)
    assert msg.pk in enqueued
    assert delivery.deliver(msg.pk) == "sent"
    msg.refresh_from_db()
    assert msg.status == "sent" and set(statuses(msg).values()) == {"accepted"}
    assert [m.rcpt_tos for m in smtp_server.messages] == [[A, B], [C]]
    # one Message-ID, two transactions, the same bytes
    assert smtp_server.messages[0].content == smtp_server.messages[1].content


def test_a_connection_cut_after_the_data_is_unknown(owner, smtp_server):
    smtp_server.handler.close_at("after-data", times=1)
    account = make_account(owner, smtp_server)
    outcome, msg = deliver_one(owner, account)
    assert (outcome, msg.status) == ("unknown", "unknown")
    assert "may already have it" in msg.last_error
    assert delivery.sweep(enqueue=lambda pk: None).enqueued == []
    assert delivery.deliver(msg.pk) is None  # never resent on its own


def test_unknown_is_retried_when_the_setting_prefers_duplicates(owner, smtp_server, settings):
    settings.MAILROOM_RETRY_UNKNOWN = True
    smtp_server.handler.close_at("after-data", times=1)
    account = make_account(owner, smtp_server)
    outcome, msg = deliver_one(owner, account)
    assert msg.status == "deferred" and msg.next_attempt_at is not None


@pytest.mark.parametrize(
    ("greeting", "outcome", "throttled"),
    [
        ("421 4.7.0 Too many connections from your host", "throttled", True),
        ("554 5.3.2 Not accepting mail right now", "deferred", False),
    ],
)
def test_a_refused_greeting_waits_and_never_fails_the_mail(
    owner, scripted_server_factory, greeting, outcome, throttled
):
    server = scripted_server_factory(MiniSMTP(greeting=greeting))
    account = make_account(owner, server)
    got, msg = deliver_one(owner, account)
    assert (got, msg.status) == (outcome, "deferred")
    assert (account.throttled_until is not None) == throttled
    assert account.paused_at is None


def test_an_untrusted_certificate_pauses_the_account(owner, smtp_server_factory,
                                                     untrusted_certificates):
    server = smtp_server_factory(security="starttls", certificates=untrusted_certificates)
    account = make_account(owner, server, security=SmtpAccount.Security.STARTTLS)
    outcome, msg = deliver_one(owner, account)
    assert (outcome, msg.status) == ("paused", "deferred")
    assert "certificate" in account.paused_reason
    assert server.messages == []
