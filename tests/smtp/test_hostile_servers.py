"""Our client against each hostile server of the fault suite: the right error class, the
right transient/permanent verdict, never a hang; and once the server heals, the same mail
goes through and is counted once. (bench/faults.py relies on these servers behaving so.)"""

from __future__ import annotations

import pytest

from mailer.smtp import SMTPClient, errors
from tests.hostile_servers import BEHAVIOURS, HostileServer, deliveries, start_sink

MESSAGE = b"Message-ID: <hostile-1@mailroom.test>\r\nSubject: hi\r\n\r\nHello.\r\n"
MID = "<hostile-1@mailroom.test>"
# Larger than the loopback socket buffers absorb (~4.5 MB), so "drop-in-data" surely cuts
# it before its end.
BIG = MESSAGE + (b"y" * 998 + b"\r\n") * 8000

# behaviour -> (error class, transient?)
EXPECTED = {
    "refuse": (errors.SMTPConnectError, True),
    "greeting-421": (errors.SMTPGreetingError, True),
    "drop-in-data": (errors.SMTPServerDisconnected, True),
    "silent": (errors.SMTPTimeoutError, True),
    "silent-after-data": (errors.SMTPOutcomeUnknown, False),
    "tls-fail": (errors.SMTPTLSError, True),
    "garbage": (errors.SMTPProtocolError, True),
    "endless": (errors.SMTPProtocolError, True),
}


def test_it_covers_every_behaviour():
    assert set(EXPECTED) == set(BEHAVIOURS)


@pytest.fixture
def sinks():
    started = []

    def start(**options):
        started.append(start_sink(**options))
        return started[-1]

    yield start
    for sink in started:
        sink.stop()


def _client(address, security="none", certificates=None) -> SMTPClient:
    return SMTPClient(
        *address,
        security=security,
        connect_timeout=2,
        command_timeout=1,
        data_timeout=5,
        cadata=certificates.ca_pem if certificates is not None else None,
    )


@pytest.mark.parametrize("behaviour", sorted(EXPECTED))
def test_it_fails_with_the_right_error_then_delivers_once_healed(
    behaviour, sinks, tls_certificates
):
    cls, transient = EXPECTED[behaviour]
    tls = behaviour == "tls-fail"
    security, certs = ("starttls", tls_certificates) if tls else ("none", None)
    sink = sinks(certificates=certs)
    with HostileServer(behaviour, upstream=(sink.host, sink.port)) as hostile:
        client = _client(hostile.address, security, certs)
        with pytest.raises(cls) as info:
            client.connect()
            client.send("from@example.com", ["to@example.com"], BIG)
        assert not isinstance(info.value, errors.SMTPCertificateError)
        assert errors.is_transient(info.value) is transient
        assert str(info.value)  # plain words, never empty
        assert not client.is_connected
        assert deliveries(sink) == {}

        hostile.heal()
        with _client(hostile.address, security, certs) as client:
            client.connect()
            result = client.send("from@example.com", ["to@example.com"], MESSAGE)
        assert result.delivered
        assert deliveries(sink) == {(MID, "to@example.com"): 1}


def test_it_takes_at_most_the_limit_of_recipients_per_transaction(sinks):
    rcpts = [f"r{i}@example.com" for i in range(5)]
    sink = sinks(recipient_limit=2)
    with _client((sink.host, sink.port)) as client:
        client.connect()
        result = client.send("from@example.com", rcpts, MESSAGE)
    assert result.accepted == rcpts[:2]
    assert {a: r.reply.code for a, r in result.rejected.items()} == {a: 452 for a in rcpts[2:]}
    assert all(r.transient for r in result.rejected.values())
    assert deliveries(sink) == {(MID, rcpts[0]): 1, (MID, rcpts[1]): 1}


def test_it_goes_away_after_each_message_on_a_connection(sinks):
    sink = sinks(go_away=True)
    with _client((sink.host, sink.port)) as client:
        client.connect()
        assert client.send("from@example.com", ["a@example.com"], MESSAGE).delivered
        assert client.noop() is False  # the reused connection is dead: found out, not hung
        assert not client.is_connected
    assert deliveries(sink) == {(MID, "a@example.com"): 1}
