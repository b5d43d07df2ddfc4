"""The next message's envelope sent right behind the end of the data (RFC 2920 section 3.1,
``SMTPClient.next_envelope_hook``) against a real MTA: Postfix's second listener
(``tests/postfix_server.py``, ``data_port``) offers PIPELINING without CHUNKING and runs
with ``smtpd_forbid_unauth_pipelining = yes`` (the default from Postfix 3.9 on), which
disconnects a client that breaks the pipelining rules with "554 5.5.0 Error: SMTP protocol
synchronization". Postfix takes every message, each once, and relays it to the next hop;
first with the client alone, then through Mailroom's whole path (a drained batch)."""

from __future__ import annotations

import email
import time
from email.message import EmailMessage

import pytest

from mailer import delivery
from mailer.models import DeliveryAttempt
from mailer.smtp.client import SMTPClient
from tests.mailer.base import make_account, send
from tests.postfix_server import RELAY_DOMAIN

pytestmark = pytest.mark.pipeline  # on SQLite, and again on PostgreSQL + Redis

AHEAD = "[the envelope below went out right behind the previous message's data]"


def _message(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "dora@example.test"
    msg["To"] = f"r{n}@{RELAY_DOMAIN}"
    msg["Subject"] = f"pipelined {n}"
    msg.set_content(f"Message {n}.\n")
    return bytes(msg)


def _relayed(postfix, before: int, count: int) -> list[str]:
    """The subjects the next hop got from Postfix, once ``count`` new ones are there."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = postfix.next_hop.messages[before:]
        if len(got) >= count and "Mail queue is empty" in postfix.queue():
            return sorted(email.message_from_bytes(m.content)["Subject"] for m in got)
        time.sleep(0.2)
    raise AssertionError(f"Postfix relayed {len(postfix.next_hop.messages) - before} of "
                         f"{count}; queue:\n{postfix.queue()}\nlog:\n{postfix.log()[-3000:]}")


def test_postfix_takes_envelopes_sent_behind_the_data(postfix):
    before = len(postfix.next_hop.messages)
    messages = [_message(n) for n in range(3)]
    with SMTPClient(**postfix.client_kwargs(port=postfix.data_port), transcript=True) as client:
        caps = client.capabilities
        assert caps is not None and caps.pipelining and not caps.chunking
        for n, raw in enumerate(messages):
            nxt = n + 1
            client.next_envelope_hook = (
                (lambda nxt=nxt: client.envelope("dora@example.test",
                                                 [f"r{nxt}@{RELAY_DOMAIN}"], messages[nxt]))
                if nxt < len(messages) else None)
            client.transcript = []
            result = client.send("dora@example.test", [f"r{n}@{RELAY_DOMAIN}"], raw)
            assert result.delivered, client.transcript
            assert (client.transcript[0] == AHEAD) == (n > 0)
            assert (client.pending_envelope is not None) == (nxt < len(messages))
        assert client.noop()  # still in step: Postfix did not call it a violation
    assert _relayed(postfix, before, 3) == [f"pipelined {n}" for n in range(3)]
    assert "protocol synchronization" not in postfix.log()


def test_a_batch_goes_through_postfix_one_round_trip_per_message(owner, postfix):
    account = make_account(owner, None, label="dora via Postfix", host=postfix.host,
                           port=postfix.data_port, from_address="dora@example.test")
    before = len(postfix.next_hop.messages)
    queued = [send(owner, account, to=f"b{n}@{RELAY_DOMAIN}", subject=f"batch {n}")
              for n in range(4)]

    assert delivery.drain(queued[0].pk) == ["sent"] * 4

    assert _relayed(postfix, before, 4) == [f"batch {n}" for n in range(4)]
    ahead = [DeliveryAttempt.objects.get(message=m).transcript.startswith(AHEAD) for m in queued]
    assert ahead == [False, True, True, True]
    assert "protocol synchronization" not in postfix.log()
