"""``services.explain``: the issue's examples in plain words, the server's words once
(or not at all, for a page that shows them beside the reason), and the phase inferred
when the caller has none. Also the migration that split stored reasons from the server's
words."""

import importlib

from django.apps import apps

from mailer import services
from mailer.models import OutboxMessage, Recipient
from tests.mailer.base import make_account


def test_the_issues_examples():
    assert services.explain(535, "5.7.8", "Authentication credentials invalid").startswith(
        "The server refused the username or password.")
    assert services.explain(535, None, "Bad login").startswith(
        "The server refused the username or password.")
    cert = services.explain(None, None, None, "SMTPCertificateError")
    assert "certificate could not be verified" in cert and "Check the host name" in cert
    assert services.explain(550, "5.1.1", "No such user").startswith(
        "The recipient's mailbox does not exist.")


def test_the_servers_words_come_once_or_not_at_all():
    full = services.explain(550, "5.1.1", "No such user")
    assert full.count("No such user") == 1 and full.endswith(
        "The server said: “550 5.1.1 No such user”"
    )
    plain = services.explain(550, "5.1.1", "No such user", server_words=False)
    assert (
        plain
        == "The recipient's mailbox does not exist. Check the address for typos; "
        "the other recipients are not affected."
    )


def test_the_phase_comes_from_the_error_class_or_the_enhanced_code():
    # A 550 to MAIL FROM is about the sender, not a recipient's mailbox.
    assert "mailbox does not exist" not in services.explain(550, "5.1.1", "x", "SMTPSenderRefused")
    assert "mailbox does not exist" in services.explain(550, "5.1.1", "x", "SMTPRecipientsRefused")
    assert "refused this recipient" in services.explain(552, "5.2.2", "Mailbox full")
    assert services.explain(550, None, "Refused").startswith("The server refused the message.")
    assert "refused this recipient" in services.explain(550, None, "Refused", phase="rcpt")


def test_the_migration_splits_stored_reasons_from_the_servers_words(owner):
    migration = importlib.import_module("mailer.migrations.0004_recipient_reason")
    message = OutboxMessage.objects.create(
        owner=owner, account=make_account(owner), status="sent", eml="outbox/x.eml",
        envelope_from="owner@example.com", message_id="<m@x>")
    old = services.explain(550, "5.1.1", "No such user", phase="rcpt")  # the old stored text
    rows = {
        "gone@example.org": dict(status="failed", code=550, enhanced="5.1.1", text=old),
        "late@example.org": dict(
            status="failed",
            code=None,
            text="Gave up after 5 day(s): "
            "The connection failed or timed out. Mailroom will try again later.",
        ),
        "ok@example.org": dict(status="accepted", code=250, enhanced="2.0.0", text="Ok queued"),
    }
    for address, fields in rows.items():
        Recipient.objects.create(message=message, address=address, **fields)

    migration._split(apps, None)
    got = {r.address: (r.reason, r.text) for r in message.recipients.all()}
    assert got["gone@example.org"] == (
        services.explain(550, "5.1.1", "", phase="rcpt", server_words=False),
        "No such user",
    )
    assert got["late@example.org"] == (rows["late@example.org"]["text"], "")
    assert got["ok@example.org"] == ("", "Ok queued")
    migration._join(apps, None)
    assert message.recipients.get(address="gone@example.org").text == old
