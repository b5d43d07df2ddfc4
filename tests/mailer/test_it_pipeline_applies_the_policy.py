"""The delivery policy with real Celery workers (issue 4): a worker killed after the end of
the data leaves an ``unknown`` message that is never resent on its own; a quota holds across
two workers; a paused account's mail goes out once a connection test succeeds; and when
two workers race over a mixed outbox every message ends in a consistent state."""

from __future__ import annotations

import asyncio
import collections
import threading

import pytest

from mailer import services
from mailer.models import DeliveryAttempt, OutboxMessage
from tests.mailer.base import make_account, send
from tests.mailer.pipeline import FAST
from tests.smtp_servers import RecordingHandler
from tests.workers import celery_worker, purge_queue, start_worker, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "the-right-password"


@pytest.fixture(autouse=True)
def _empty_queue():
    # Wake-ups and sweeps left by another test must not delay this one's, nor the next's.
    purge_queue()
    yield
    purge_queue()


class StallAfterData(RecordingHandler):
    """Takes the whole message, then does not answer (until the test ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = 1
        self.got_data = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.stall:
            self.stall -= 1
            self.got_data.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 too late"
        return await super().handle_DATA(server, session, envelope)


def status_of(msg) -> str:
    return OutboxMessage.objects.get(pk=msg.pk).status


def test_a_worker_killed_after_the_end_of_data_leaves_it_unknown(owner, smtp_server_factory):
    handler = StallAfterData()
    server = smtp_server_factory(handler=handler)
    account = make_account(owner, server)
    try:
        doomed = start_worker(env=FAST)
        msg = send(owner, account)
        assert handler.got_data.wait(30), "the worker never sent the data"
        doomed.kill()
        with celery_worker(beat=True, env=FAST) as worker:
            wait_until(lambda: status_of(msg) == "unknown", timeout=30,
                       what="the lost message marked unknown")
            # several sweeps later it is still not resent
            worker.wait_for_log("mailer.tasks.sweep", count=8, timeout=20)
            assert status_of(msg) == "unknown" and server.messages == []

            services.resend_unknown(owner, msg)
            wait_until(lambda: status_of(msg) == "sent", timeout=30, what="resent")
    finally:
        handler.release.set()
    assert [m.content for m in server.messages] == [msg.read_eml()]
    outcomes = list(DeliveryAttempt.objects.filter(message=msg).values_list("outcome", flat=True))
    assert outcomes == ["unknown", "sent"]
    msg.refresh_from_db()
    assert msg.attempts == 2 and "may have it" not in msg.last_error


def test_a_quota_holds_across_two_workers(owner, smtp_server):
    account = make_account(owner, smtp_server, quota_per_minute=5)
    # Two workers; one of them also runs the sweeper.
    with celery_worker(beat=True, env=FAST) as sweeper, celery_worker(env=FAST):
        msgs = [send(owner, account) for _ in range(12)]

        def settled():
            rows = list(OutboxMessage.objects.filter(account=account)
                        .values_list("status", "wait_reason"))
            return (sum(s == "sent" for s, _ in rows) == 5
                    and sum(s == "deferred" and "quota" in w for s, w in rows) == 7)

        wait_until(settled, timeout=30, what="5 sent and 7 waiting for the quota")
        # several sweeps later the quota still holds and nothing failed; the rest goes out
        # a minute later (tests/mailer/test_it_defers_mail_beyond_the_quota.py travels there)
        sweeper.wait_for_log("mailer.tasks.sweep", count=6, timeout=20)
    statuses = collections.Counter(
        OutboxMessage.objects.filter(pk__in=[m.pk for m in msgs]).values_list("status", flat=True))
    assert statuses == {"sent": 5, "deferred": 7}
    assert len(smtp_server.messages) == 5


def test_a_paused_account_resumes_when_a_connection_test_succeeds(owner, smtp_server_factory):
    server = smtp_server_factory(accounts={"owner": PASSWORD}, auth_require_tls=False)
    account = make_account(owner, server, username="owner", secret="stale", auth_mechanism="PLAIN",
                           allow_plaintext_auth=True)
    with celery_worker(beat=True, env=FAST) as worker:
        msgs = [send(owner, account) for _ in range(3)]
        wait_until(lambda: OutboxMessage.objects.filter(account=account, status="deferred",
                                                        wait_reason__contains="paused").exists(),
                   timeout=30, what="the account paused")
        account.refresh_from_db()
        assert account.paused_at is not None
        # the rest waits behind the pause: sweeps come and go, nothing is attempted
        sweeps = worker.log.count("mailer.tasks.sweep")
        worker.wait_for_log("mailer.tasks.sweep", count=sweeps + 6, timeout=20)
        assert OutboxMessage.objects.filter(account=account,
                                            status__in=["queued", "deferred"]).count() == 3
        assert len(server.handler.login_attempts) == 1

        account.set_secret(PASSWORD)
        account.save()
        assert services.check_account(owner, account).ok
        wait_until(lambda: all(status_of(m) == "sent" for m in msgs), timeout=30,
                   what="the waiting mail sent")
    assert len(server.messages) == 3


def test_every_message_stays_consistent_when_two_workers_race(owner, smtp_server):
    handler = smtp_server.handler
    handler.reply_at("rcpt", "450 4.2.1 Mailbox busy", address="busy@example.org", times=3)
    handler.reply_at("rcpt", "550 5.1.1 No such user", address="ghost@example.org")
    handler.reply_at("after-data", "554 5.7.1 Refused", address="spam@example.org")
    account = make_account(owner, smtp_server)
    plan = ["a@example.org", "busy@example.org", "a@example.org, ghost@example.org",
            "spam@example.org"] * 3
    with celery_worker(beat=True, env=FAST), celery_worker(env=FAST):
        msgs = [send(owner, account, to=to) for to in plan]
        wait_until(lambda: not OutboxMessage.objects.filter(
            pk__in=[m.pk for m in msgs],
            status__in=["queued", "scheduled", "sending", "deferred"]).exists(),
            timeout=60, what="every message final")

    received = collections.Counter(m.content for m in handler.messages)
    for msg, to in zip(msgs, plan, strict=True):
        msg.refresh_from_db()
        rcpts = dict(msg.recipients.values_list("address", "status"))
        attempts = DeliveryAttempt.objects.filter(message=msg)
        assert not attempts.filter(outcome="in_progress").exists()
        assert msg.attempts == attempts.exclude(outcome="skipped").count()
        assert msg.attempt_id is None and msg.lease_until is None
        if to == "spam@example.org":
            assert msg.status == "failed" and rcpts == {to: "failed"}
            assert received[msg.read_eml()] == 0
        else:
            assert msg.status == "sent" and msg.sent_at is not None
            # each accepted recipient got it exactly once
            assert received[msg.read_eml()] == 1
            expected = {a.strip(): "accepted" for a in to.split(",")}
            if "ghost" in to:
                expected["ghost@example.org"] = "failed"
            assert rcpts == expected
