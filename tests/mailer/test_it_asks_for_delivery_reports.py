"""Delivery reports asked for on the wire (RFC 3461), through the real delivery path to a
real SMTP server (aiosmtpd, taught DSN by tests/smtp_servers.py): where the server offers
DSN, every message goes with its envelope id, RET=HDRS, and per recipient
NOTIFY=FAILURE,DELAY (and SUCCESS when the user asked) and ORCPT; without DSN, nothing
extra is sent."""

from __future__ import annotations

from mailer import delivery
from tests.mailer.base import send


def test_it_asks_for_reports_on_failure_and_delay(owner, account, server):
    server.handler.dsn = True
    msg = send(owner, account, to="ann@example.org", cc="bob+x@example.org")
    assert delivery.deliver(msg.pk) == "sent"
    msg.refresh_from_db()
    assert len(msg.envid) == 32 and msg.envid.isalnum()
    assert server.handler.dsn_params == [
        ("MAIL", msg.envelope_from, f"RET=HDRS ENVID={msg.envid}"),
        ("RCPT", "ann@example.org", "NOTIFY=FAILURE,DELAY ORCPT=rfc822;ann@example.org"),
        ("RCPT", "bob+x@example.org", "NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob+2Bx@example.org"),
    ]


def test_asked_for_it_adds_success(owner, account, server):
    server.handler.dsn = True
    msg = send(owner, account, to="ann@example.org", delivery_report=True)
    assert msg.delivery_report
    assert delivery.deliver(msg.pk) == "sent"
    assert server.handler.dsn_params[1][2].startswith("NOTIFY=SUCCESS,FAILURE,DELAY ")


def test_each_message_has_its_own_envelope_id(owner, account, server):
    server.handler.dsn = True
    first, second = send(owner, account), send(owner, account)
    delivery.deliver(first.pk), delivery.deliver(second.pk)
    first.refresh_from_db(), second.refresh_from_db()
    envids = [p for verb, _a, p in server.handler.dsn_params if verb == "MAIL"]
    assert envids == [f"RET=HDRS ENVID={first.envid}", f"RET=HDRS ENVID={second.envid}"]
    assert first.envid != second.envid


def test_without_dsn_nothing_extra_is_sent(owner, account, server):
    msg = send(owner, account, to="ann@example.org", delivery_report=True)
    assert delivery.deliver(msg.pk) == "sent"  # aiosmtpd alone refuses unknown parameters
    assert server.handler.dsn_params == []
    [got] = server.received
    assert got.rcpt_tos == ["ann@example.org"]
