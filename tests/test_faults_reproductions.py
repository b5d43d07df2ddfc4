"""Precise reproductions of what the fault suite (``bench/faults.py``) found, one fault at a
time, so that a fix can be tested without the whole suite.

pg-terminate: when the worker's database connection dies between the server's final 250
and the recording of the result, the outcome the worker knows for certain ("sent") is
lost with the connection; the lease later expires after ``end_of_data_at`` and the
message becomes ``unknown`` although the server took it — and a user who then presses
"send again" sends it twice. (Measured: 20 of 200 messages in the full run.) Fixed: the
worker reconnects and records the result it holds (``mailer.delivery.recording.record``)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from mailer import delivery
from mailer.models import OutboxMessage
from tests.conftest import require_service
from tests.mailer.base import make_account, make_user, send
from tests.smtp_servers import RecordingHandler, start_smtp_server


class _DropsTheDatabaseBeforeAnswering(RecordingHandler):
    """Takes the message, kills the worker's PostgreSQL connection, then answers 250."""

    def __init__(self, backend_pid: int) -> None:
        super().__init__()
        self.backend_pid = backend_pid

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        sd = connection.settings_dict
        with psycopg.connect(dbname="postgres", host=sd["HOST"] or "127.0.0.1",
                             port=sd["PORT"] or 5432, user=sd["USER"] or "postgres",
                             password=sd["PASSWORD"] or None, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (self.backend_pid,))
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.services
def test_it_records_sent_when_the_database_connection_drops_after_the_250(transactional_db):
    require_service(connection.vendor == "postgresql", "PostgreSQL (pass 2)")
    owner = make_user("owen")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    handler = _DropsTheDatabaseBeforeAnswering(pid)
    server = start_smtp_server(handler=handler)
    try:
        account = make_account(owner, server)
        message = send(owner, account)
        try:
            outcome = delivery.deliver(message.pk)
        except Exception:  # the connection died under the recording of the result
            outcome = None
        connection.close()  # what Celery's Django fix-up does before the next task
        assert [m.rcpt_tos for m in handler.messages] == [["alice@example.org"]]
        message.refresh_from_db()
        assert (outcome, message.status) == ("sent", OutboxMessage.Status.SENT)
    finally:
        server.stop()
