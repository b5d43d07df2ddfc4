"""The capability snapshot and the compose-time checks (issue 4): a connection test or a
delivery records what the server offers; ``send_draft`` then refuses, with a message on the
field, what that server would refuse — too big after base64, an international address
without SMTPUTF8 — and keeps the draft as it was."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from mailer import delivery, services
from mailer.models import Draft, OutboxMessage
from tests.mailer.base import make_account, make_draft, send


@pytest.fixture
def small_server(smtp_server_factory):
    # 100 kB SIZE limit, no SMTPUTF8.
    return smtp_server_factory(data_size_limit=100_000, enable_SMTPUTF8=False)


@pytest.fixture
def account(owner, small_server):
    account = make_account(owner, small_server)
    assert services.check_account(owner, account).ok
    account.refresh_from_db()
    return account


def test_a_connection_test_records_the_snapshot(account):
    caps = account.capabilities
    assert caps["size"] == 100_000 and caps["smtputf8"] is False and caps["eightbitmime"]
    assert account.capabilities_seen_at is not None


def test_every_delivery_refreshes_the_snapshot(owner, account):
    seen = account.capabilities_seen_at
    msg = send(owner, account)
    assert delivery.deliver(msg.pk) == "sent"
    account.refresh_from_db()
    assert account.capabilities_seen_at > seen


def test_it_refuses_a_message_too_big_once_encoded(owner, account):
    # 80 kB of file fits under 100 kB as bytes, not once base64 adds a third.
    draft = make_draft(owner, account, subject="Scan",
                       attachments=[("scan.pdf", "application/pdf", b"\x00" * 80_000)])
    with pytest.raises(ValidationError) as err:
        services.send_draft(owner, draft, hold_seconds=0)
    [problem] = err.value.message_dict["attachments"]
    assert "0.1 MB as sent" in problem and "accepts at most 0.1 MB" in problem
    assert "Remove or shrink attachments" in problem
    # nothing was queued and the draft is untouched, attachment included
    assert not OutboxMessage.objects.exists()
    draft = Draft.objects.get(pk=draft.pk)
    assert [a.filename for a in draft.attachments.all()] == ["scan.pdf"]


def test_it_refuses_an_international_address_without_smtputf8(owner, account):
    draft = make_draft(owner, account, to="alice@example.org", cc="josé@example.com")
    with pytest.raises(ValidationError) as err:
        services.send_draft(owner, draft, hold_seconds=0)
    assert list(err.value.message_dict) == ["cc"]
    assert "SMTPUTF8" in err.value.message_dict["cc"][0]
    assert "josé@example.com" in err.value.message_dict["cc"][0]
    assert not OutboxMessage.objects.exists() and Draft.objects.filter(pk=draft.pk).exists()


def test_a_server_with_smtputf8_takes_it(owner, smtp_server_factory):
    server = smtp_server_factory(enable_SMTPUTF8=True)
    account = make_account(owner, server)
    assert services.check_account(owner, account).ok
    account.refresh_from_db()
    msg = services.send_draft(owner, make_draft(owner, account, to="josé@example.com"),
                              hold_seconds=0)
    assert delivery.deliver(msg.pk) == "sent"
    assert server.messages[0].rcpt_tos == ["josé@example.com"]
