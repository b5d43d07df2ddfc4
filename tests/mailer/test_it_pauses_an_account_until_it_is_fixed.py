"""535 pauses the account: its mail waits (deferred, never failed), nothing more is
attempted that could get it locked at the provider, and a successful connection test —
or fixing the secret — releases the waiting mail (issue 4)."""

from __future__ import annotations

import pytest

from mailer import delivery, services
from mailer.models import DeliveryAttempt
from tests.mailer.base import make_account, send

PASSWORD = "the-right-password"


@pytest.fixture
def server(smtp_server_factory):
    return smtp_server_factory(accounts={"owner": PASSWORD}, auth_require_tls=False)


@pytest.fixture
def account(owner, server):
    return make_account(owner, server, username="owner", secret="an-old-password",
                        auth_mechanism="PLAIN", allow_plaintext_auth=True)


def run_all(ids):
    return [delivery.deliver(pk) for pk in ids]


def test_nothing_more_is_attempted_while_paused(owner, account, server):
    first = send(owner, account)
    assert delivery.deliver(first.pk) == "paused"
    later = [send(owner, account).pk for _ in range(3)]

    assert run_all([first.pk, *later]) == [None] * 4
    assert delivery.sweep(enqueue=lambda pk: None).enqueued == []
    # one login attempt in all: the provider never sees a second wrong password
    assert len(server.handler.login_attempts) == 1
    account.refresh_from_db()
    assert "app password" in account.paused_reason and "535 5.7.8" in account.paused_reason
    assert DeliveryAttempt.objects.filter(message__account=account).count() == 1


def test_a_failed_connection_test_keeps_the_pause(owner, account, server):
    msg = send(owner, account)
    delivery.deliver(msg.pk)
    result = services.check_account(owner, account)
    assert not result.ok and "password" in result.verdict
    account.refresh_from_db()
    assert account.paused_at is not None
    assert delivery.deliver(msg.pk) is None


def test_a_successful_connection_test_releases_the_mail(owner, account, server):
    msgs = [send(owner, account) for _ in range(3)]
    assert delivery.deliver(msgs[0].pk) == "paused"

    account.set_secret(PASSWORD)
    account.save()
    result = services.check_account(owner, account)
    assert result.ok, result.verdict

    account.refresh_from_db()
    assert account.paused_at is None and account.paused_reason == ""
    enqueued = []
    delivery.sweep(enqueue=enqueued.append)
    for pk in {m.pk for m in msgs} | set(enqueued):
        delivery.deliver(pk)
    for m in msgs:
        m.refresh_from_db()
        assert m.status == "sent" and m.wait_reason == ""
    # the paused one is sent once, with the same Message-ID it had
    assert sorted(r.content for r in server.messages) == sorted(m.read_eml() for m in msgs)
    assert len(server.messages) == 3


def test_resume_by_command_of_the_owner_only(owner, stranger, account):
    msg = send(owner, account)
    delivery.deliver(msg.pk)
    with pytest.raises(services.NotFound):
        services.resume_account(stranger, account)
    account.refresh_from_db()
    assert account.paused_at is not None


def test_resuming_wakes_the_mail_queued_during_the_pause(owner, account, server,
                                                         django_capture_on_commit_callbacks):
    paused = send(owner, account)
    delivery.deliver(paused.pk)
    queued_meanwhile = send(owner, account)
    assert delivery.deliver(queued_meanwhile.pk) is None  # its wake-up found the pause

    with django_capture_on_commit_callbacks() as wake_ups:
        services.resume_account(owner, account)
    assert len(wake_ups) == 2  # both, not only the deferred one
    account.set_secret(PASSWORD)
    account.save()
    assert [delivery.deliver(m.pk) for m in (paused, queued_meanwhile)] == ["sent", "sent"]
