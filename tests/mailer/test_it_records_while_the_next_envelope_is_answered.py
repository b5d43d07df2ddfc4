"""In a batch, a message's record is written while the next message's envelope is on the wire
(``worker._send_batch``, ``attempt._exchange``): its durable commit overlaps the server's
round trip instead of adding to it. Likewise the next message's connection settings are read
while the server takes the end of the data before it. The order of the durable writes is the
one a single thread makes: message 1's mark, its data, its record, then message 2's mark,
and only then message 2's data. Where message 2's envelope went out behind message 1's
data, message 1's record and message 2's mark are one commit.

The server is real (aiosmtpd); the database statements are watched with Django's own
``execute_wrapper``. Runs on SQLite and again on PostgreSQL (pass 2)."""

import threading

import pytest
from django.db import connection

from mailer import delivery
from tests.mailer.base import make_account, send
from tests.smtp_servers import RecordingHandler, start_smtp_server

pytestmark = pytest.mark.pipeline


class _Watching(RecordingHandler):
    """Notes when each MAIL and each end of data reaches the server."""

    def __init__(self, events: list[str], lock: threading.Lock) -> None:
        super().__init__()
        self.events, self.lock = events, lock
        self.mails = 0
        self.second_mail = threading.Event()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        with self.lock:
            self.mails += 1
            self.events.append(f"MAIL {self.mails}")
        if self.mails == 2:
            self.second_mail.set()
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.events.append(f"data {self.mails}")
        return await super().handle_DATA(server, session, envelope)


def test_a_record_is_written_while_the_next_envelope_is_answered(owner):
    events: list[str] = []
    lock = threading.Lock()
    handler = _Watching(events, lock)
    server = start_smtp_server(handler=handler)
    try:
        account = make_account(owner, server)
        first = send(owner, account, subject="one")
        send(owner, account, subject="two")
        records = marks = statements = 0
        overlapped: list[bool] = []
        ours: list[str] = []  # the worker's own statements, in order
        commits: dict[str, object] = {}  # record or mark → the commit it was part of
        outer = len(connection.atomic_blocks)  # the test's own transaction, if any

        def watch(execute, sql, params, many, context):
            nonlocal records, marks, statements
            statements += 1
            # One commit: SQLite, the atomic block (inside the test's own); PostgreSQL, the
            # statement itself.
            inner = len(connection.atomic_blocks) > outer
            commit = id(connection.atomic_blocks[-1]) if inner else statements
            if (sql.startswith("SELECT") and '"secret_encrypted"' in sql
                    and "mailer_outboxmessage" not in sql):
                ours.append("settings")  # the account's connection settings (not the claim)
            if '"finished_at" = ' in sql:
                records += 1
                if records == 1:
                    # Message 2's MAIL reaches the server while message 1's record waits to
                    # be written: only if the two overlap (one thread doing both in turn
                    # would wait here for a MAIL it has not sent yet).
                    overlapped.append(handler.second_mail.wait(5))
                ours.append(f"record {records}")
                commits[f"record {records}"] = commit
                with lock:
                    events.append(f"record {records}")
            if '"end_of_data_at" = ' in sql:
                marks += 1
                ours.append(f"mark {marks}")
                commits[f"mark {marks}"] = commit
                with lock:
                    events.append(f"mark {marks}")
            return execute(sql, params, many, context)

        with connection.execute_wrapper(watch):
            outcomes = delivery.drain(first.pk)
    finally:
        server.stop()

    assert outcomes == ["sent", "sent"]
    assert overlapped == [True]
    assert len(handler.messages) == 2
    assert [e for e in events if not e.startswith("MAIL")] == [
        "mark 1", "data 1", "record 1", "mark 2", "data 2", "record 2",
    ]
    assert events.index("MAIL 2") < events.index("record 1")
    # Message 2's settings are read while the server takes message 1's end of data (once its
    # mark is made), not between message 1's reply and message 2's envelope.
    assert ours == ["settings", "mark 1", "settings", "record 1", "mark 2", "record 2"]
    # Message 2's envelope went out behind message 1's data, so its mark was asked for at
    # once: message 1's record and message 2's mark are one commit (one WAL flush).
    assert commits["record 1"] == commits["mark 2"]
    assert len({commits["mark 1"], commits["record 1"], commits["record 2"]}) == 3


def test_when_the_previous_record_cannot_be_written_nothing_more_is_sent(owner, account, server):
    """The database is out of reach for the previous message's record (its write gave up):
    the exchange already on the wire stops before the end of the data, with no mark, and
    the error is the worker's (the message is retried once its lease expires)."""
    import functools

    from django.db import OperationalError

    from mailer.delivery import attempt as attempts

    message = send(owner, account, subject="stopped")
    claimed = delivery.claim(message.pk)
    client, _ = delivery.connections.acquire(account)
    marker = attempts._Marker(message.pk, claimed.attempt.attempt_id)

    class Unwritable:  # the previous record, its every write failing as the database's do
        def write(self):
            raise OperationalError("the database is out of reach")

        def write_with(self, other):
            raise OperationalError("the database is out of reach")

    with message.eml.open("rb") as fh, pytest.raises(attempts._Abandoned) as raised:
        attempts._exchange(client, marker, Unwritable(), None, functools.partial(
            client.send, message.envelope_from, ["alice@example.org"], fh))
    client.close()

    assert isinstance(raised.value.error, OperationalError)
    assert not marker.marked
    assert server.received == []
