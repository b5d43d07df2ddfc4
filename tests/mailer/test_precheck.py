"""Compose-time checks against the capability snapshot (mailer.precheck)."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ValidationError

from mailer import mime, precheck
from mailer.models import SmtpAccount
from mailer.smtp.capabilities import Capabilities
from mailer.smtp.replies import Reply


def snapshot(*extensions: str) -> dict:
    """The JSON an account stores after a server answered EHLO with these lines."""
    return Capabilities.from_ehlo(Reply.from_lines(250, ["mx.example.com", *extensions])).to_dict()


def test_encoded_size_is_base64_with_line_breaks():
    for raw in (0, 1, 2, 3, 57, 58, 1000, 1_000_000):
        data = b"x" * raw
        assert precheck.encoded_size(raw) == len(base64.encodebytes(data).replace(b"\n", b"\r\n"))


def test_the_estimate_counts_a_third_more_plus_headers():
    ten_mb = 10_000_000
    estimate = precheck.estimated_size(2_000, [ten_mb])
    assert 13_333_334 < estimate < 13_333_334 * 1.03 + 10_000


def test_it_names_both_sizes_in_mb():
    found = precheck.problems(snapshot("SIZE 10000000"), size=13_600_000,
                              server="the server of “Work” (smtp.example.com)")
    assert found == {"attachments": [
        "The message is 13.6 MB as sent (attachments grow by about a third when encoded), but "
        "the server of “Work” (smtp.example.com) accepts at most 10.0 MB. Remove or shrink "
        "attachments, or share large files as a link."
    ]}
    assert precheck.problems(snapshot("SIZE 10000000"), size=10_000_000) == {}


def test_size_zero_or_absent_means_no_limit():
    assert precheck.problems(snapshot("SIZE 0"), size=10**9) == {}
    assert precheck.problems(snapshot("SIZE"), size=10**9) == {}
    assert precheck.problems(snapshot("8BITMIME"), size=10**9) == {}


def test_international_addresses_need_smtputf8():
    recipients = [("ann@example.com", "to"), ("josé@example.com", "cc"), ("李@example.cn", "bcc")]
    found = precheck.problems(snapshot("8BITMIME"), size=100, recipients=recipients)
    assert set(found) == {"cc", "bcc"}
    assert found["cc"] == [
        "Cc: “josé@example.com” has non-ASCII characters before the @, and the server does not "
        "offer international addresses (SMTPUTF8). Use an ASCII address for this recipient or "
        "send from another account."
    ]
    assert precheck.problems(snapshot("SMTPUTF8", "8BITMIME"), size=100,
                             recipients=recipients) == {}


def test_an_international_sender_needs_smtputf8():
    found = precheck.problems(snapshot(), size=100, envelope_from="zoë@example.com")
    assert list(found) == ["account"]


def test_eight_bit_content_needs_8bitmime():
    found = precheck.problems(snapshot("PIPELINING"), size=100, eight_bit=True)
    assert "8BITMIME" in found["body_text"][0]
    assert precheck.problems(snapshot("8BITMIME"), size=100, eight_bit=True) == {}
    # an SMTPUTF8 message may carry UTF-8 headers where the server offers SMTPUTF8
    assert precheck.problems(snapshot("SMTPUTF8"), size=100, eight_bit=True, smtputf8=True) == {}


def test_a_helo_only_server_offers_nothing():
    helo = Capabilities.from_helo().to_dict()
    found = precheck.problems(helo, size=100, recipients=[("josé@example.com", "to")])
    assert list(found) == ["to"]


def test_without_a_snapshot_nothing_is_refused():
    assert precheck.problems(None, size=10**9, recipients=[("josé@example.com", "to")]) == {}
    assert precheck.problems({}, size=10**9, eight_bit=True) == {}


def test_it_reads_a_snapshot_with_only_extensions():
    # Older snapshots (or hand-made ones) may lack the flags: the extensions decide.
    assert precheck.problems({"extensions": {"SMTPUTF8": ""}}, size=1,
                             recipients=[("josé@example.com", "to")]) == {}


# --- check_message: what send_draft calls, on a real frozen message --------------------------


@pytest.fixture
def account(django_user_model, db):
    owner = django_user_model.objects.create_user("ann")
    return SmtpAccount.objects.create(owner=owner, label="Work", from_address="ann@example.com",
                                      host="smtp.example.com", port=587)


def test_check_message_refuses_a_big_attachment(account):
    account.capabilities = snapshot("SIZE 100000", "SMTPUTF8", "8BITMIME")
    frozen = mime.build_message(account=account, to="bob@example.org", subject="Report",
                                body_text="Attached.", attachments=[("r.pdf", "application/pdf",
                                                                     b"%" * 90_000)])
    # 90 kB of file is about 123 kB once encoded: over the 100 kB limit
    with pytest.raises(ValidationError) as err:
        precheck.check_message(account, frozen)
    [message] = err.value.message_dict["attachments"]
    assert "0.1 MB" in message and "“Work” (smtp.example.com)" in message


def test_check_message_refuses_an_international_recipient(account):
    account.capabilities = snapshot("SIZE 10000000", "8BITMIME")
    frozen = mime.build_message(account=account, to="bob@example.org", cc="josé@example.com",
                                subject="Hi", body_text="Olá")
    with pytest.raises(ValidationError) as err:
        precheck.check_message(account, frozen)
    assert list(err.value.message_dict) == ["cc"]


def test_check_message_lets_a_good_message_through(account):
    account.capabilities = snapshot("SIZE 10000000", "8BITMIME")
    # an IDN domain with an ASCII local part goes out in A-labels: no SMTPUTF8 needed
    frozen = mime.build_message(account=account, to="bob@bücher.example", subject="Grüße",
                                body_text="Schöne Grüße")
    precheck.check_message(account, frozen)
