"""In a batch, a message's record is written in the same durable commit as the next
message's end-of-data mark (``worker._send_batch``, ``attempt._exchange``): one WAL flush per
message, not two. The order of the durable writes: message 1's mark, its data, then message
1's record with message 2's mark, and only then message 2's data. A large next message (over
``attempt._GROUP_MAX_BYTES``) has the record written before its exchange begins instead, so
that its upload never keeps an accepted message unrecorded.

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

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        with self.lock:
            self.mails += 1
            self.events.append(f"MAIL {self.mails}")
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.events.append(f"data {self.mails}")
        return await super().handle_DATA(server, session, envelope)


def _drain_two(owner, second_body: str = "") -> tuple[list[str], list[str], list[str], dict]:
    """Two messages drained in one batch, with what the server and the database saw: the
    outcomes, the server's events and ours (MAILs, ends of data, records, marks) in order,
    the worker's own statements in order, and the commit each record and mark was part of."""
    events: list[str] = []
    lock = threading.Lock()
    handler = _Watching(events, lock)
    server = start_smtp_server(handler=handler)
    try:
        account = make_account(owner, server)
        first = send(owner, account, subject="one")
        send(owner, account, subject="two", body_text=second_body or "two")
        statements = 0
        seen = {"record": 0, "mark": 0}
        ours: list[str] = []  # the worker's own statements, in order
        commits: dict[str, object] = {}  # record or mark → the commit it was part of
        outer = len(connection.atomic_blocks)  # the test's own transaction, if any

        def watch(execute, sql, params, many, context):
            nonlocal statements
            statements += 1
            # One commit: SQLite, the atomic block (inside the test's own); PostgreSQL, the
            # statement itself.
            inner = len(connection.atomic_blocks) > outer
            commit = id(connection.atomic_blocks[-1]) if inner else statements
            if (sql.startswith("SELECT") and '"secret_encrypted"' in sql
                    and "mailer_outboxmessage" not in sql):
                ours.append("settings")  # the account's connection settings (not the claim)
            for column, kind in (('"finished_at" = ', "record"), ('"end_of_data_at" = ', "mark")):
                if column in sql:
                    seen[kind] += 1
                    name = f"{kind} {seen[kind]}"
                    ours.append(name)
                    commits[name] = commit
                    with lock:
                        events.append(name)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(watch):
            outcomes = delivery.drain(first.pk)
    finally:
        server.stop()
    assert len(handler.messages) == 2
    return outcomes, events, ours, commits


def test_a_record_and_the_next_mark_are_one_commit(owner):
    outcomes, events, ours, commits = _drain_two(owner)

    assert outcomes == ["sent", "sent"]
    assert [e for e in events if not e.startswith("MAIL")] == [
        "mark 1", "data 1", "record 1", "mark 2", "data 2", "record 2",
    ]
    # Message 2's envelope went out (behind message 1's data) before message 1 was recorded.
    assert events.index("MAIL 2") < events.index("record 1")
    # Each message's settings are read when its connection is taken from the cache.
    assert ours == ["settings", "mark 1", "settings", "record 1", "mark 2", "record 2"]
    assert commits["record 1"] == commits["mark 2"]
    assert len({commits["mark 1"], commits["record 1"], commits["record 2"]}) == 3


def test_before_a_large_message_the_previous_record_is_written_first(owner):
    from mailer.delivery import attempt as attempts

    big = "x" * 76 + "\n"
    outcomes, events, ours, commits = _drain_two(
        owner, second_body=big * (attempts._GROUP_MAX_BYTES // len(big) + 1))

    assert outcomes == ["sent", "sent"]
    assert [e for e in events if not e.startswith("MAIL")] == [
        "mark 1", "data 1", "record 1", "mark 2", "data 2", "record 2",
    ]
    # Message 1 was recorded in its own commit before message 2's exchange began (before
    # its connection was taken, with its settings), so before any of its data went out.
    assert ours == ["settings", "mark 1", "record 1", "settings", "mark 2", "record 2"]
    assert len({commits["mark 1"], commits["record 1"], commits["mark 2"],
                commits["record 2"]}) == 4


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
        attempts._exchange(client, marker, Unwritable(), functools.partial(
            client.send, message.envelope_from, ["alice@example.org"], fh))
    client.close()

    assert isinstance(raised.value.error, OperationalError)
    assert not marker.marked
    assert server.received == []
