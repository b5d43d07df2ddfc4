"""The outbox state machine: claim, deliver, record, sweep.

The protocol (ARCHITECTURE invariants 1 and 3):

1. **Claim** in a short transaction: one conditional UPDATE moves a due message to
   ``sending`` with a fresh ``attempt_id`` and a lease (``lease_until``); the
   ``DeliveryAttempt`` row is written in the same transaction, before any network traffic.
   Only the worker whose UPDATE matched goes on.
2. **Talk SMTP with no transaction open.** Right before the final chunk of the data goes
   out, ``end_of_data_at`` is stamped on the attempt in a durable commit (and the lease is
   checked: a worker that has lost its lease stops there, so the message is not sent twice).
3. **Record** right after the server's final reply, and only if the message still carries
   our ``attempt_id``.
4. **Sweep** (Celery beat): enqueue every due row, reclaim expired leases. A lease that
   expired after ``end_of_data_at`` becomes ``unknown`` (the server may have the message);
   one that expired before it is retried safely.

The remaining duplicate window: a worker killed between the server's final 250 and its
commit. The message then becomes ``unknown`` (not resent) unless
``MAILROOM_RETRY_UNKNOWN`` is set.

**Batches** (``drain``): one wake-up lets a worker drain the due mail of one account. It
claims up to ``MAILROOM_CLAIM_BATCH`` messages in one statement (``UPDATE … WHERE id IN
(SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`` on PostgreSQL; SQLite serialises
writers, so the same statement without the lock clause is just as safe), each with its own
attempt id and ``DeliveryAttempt`` row, then sends them one after another over the cached
connection, each with its own end-of-data mark (which renews that message's lease) and its
own record right after the server's reply. A worker killed mid-batch leaves the rest of the
batch in ``sending`` with no end-of-data mark: the sweeper gives each back to the queue when
its lease expires, and only a message whose *own* mark was committed becomes ``unknown``.
A message whose lease ran out while it waited its turn and was taken over is not sent by
us: the end-of-data mark is conditional on our attempt id.

**Every commit here is durable.** The claim, the end-of-data mark and the record are ordinary
commits: on PostgreSQL each returns only once its WAL is flushed (``synchronous_commit`` at
its default, ``on``; nothing here lowers it). The mark is what turns a connection lost after
the final dot into ``unknown`` instead of a blind resend, so it is on disk before the final
chunk is written: a crash of the worker, of the PostgreSQL server or of its machine after
that point finds the mark after recovery, and the sweeper makes the message ``unknown``
(``tests/mailer/test_it_keeps_the_mark_through_a_database_crash.py``, and the
``pg-crash`` scenario of ``bench/faults.py``). Throughput comes from doing fewer commits
(one claim statement per batch, one statement per plain success), never from weaker ones.

Retry times live in ``next_attempt_at``; the broker only carries wake-ups with ids.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from mailer import destinations, policy, quotas
from mailer.models import DeliveryAttempt, OutboxMessage, Recipient, SmtpAccount
from mailer.policy import Action

log = logging.getLogger("mailer.delivery")

Status = OutboxMessage.Status
RStatus = Recipient.Status
Outcome = DeliveryAttempt.Outcome


class LeaseLost(Exception):
    """Our claim on the message was taken over (lease expired and reclaimed)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _seconds(name: str) -> float:
    return float(getattr(settings, name))


# --- the SMTP client for an account -----------------------------------------------------


def client_for(account: SmtpAccount, *, transcript: bool = True):
    """An unconnected ``SMTPClient`` configured from the account."""
    from mailer.smtp.client import SMTPClient

    use_auth = account.auth_mechanism != SmtpAccount.AuthMechanism.NONE and bool(account.username)
    return SMTPClient(
        account.host,
        account.port,
        security=account.security,
        local_hostname=None,
        username=account.username if use_auth else None,
        secret=account.get_secret() if use_auth else None,
        auth_mechanism="auto" if account.auth_mechanism == "none" else account.auth_mechanism,
        allow_plaintext_auth=account.allow_plaintext_auth,
        verify=account.verify_tls,
        cadata=account.ca_certificate or None,
        transcript=transcript,
        connect_timeout=settings.MAILROOM_SMTP_CONNECT_TIMEOUT,
        command_timeout=settings.MAILROOM_SMTP_COMMAND_TIMEOUT,
        data_timeout=settings.MAILROOM_SMTP_DATA_TIMEOUT,
        destination_check=destinations.check_for(account),
    )


def record_capabilities(account: SmtpAccount, snapshot: dict) -> None:
    now = timezone.now()
    SmtpAccount.objects.filter(pk=account.pk).update(capabilities=snapshot, capabilities_seen_at=now)
    account.capabilities, account.capabilities_seen_at = snapshot, now


@dataclass
class _Cached:
    client: object
    fingerprint: str
    last_used: float


class ConnectionCache:
    """One open SMTP connection per account per worker process, kept for
    ``MAILROOM_CONNECTION_IDLE_SECONDS`` and checked with NOOP before reuse. A connection is
    taken out while in use, and closed on any error or when the account's settings changed."""

    def __init__(self) -> None:
        self._conns: dict[int, _Cached] = {}
        self.opened = 0

    def acquire(self, account: SmtpAccount):
        """Return (client, reused). Raises the client's errors when a new connection fails.

        The account's connection settings are read afresh first: the row in hand was read
        when its message was claimed, and an edit since (a new password, another login
        method) must retire the cached connection in every worker and be what the next
        login uses. One primary-key read per message."""
        account.refresh_from_db(fields=SmtpAccount.CONNECTION_FIELDS)
        cached = self._conns.pop(account.pk, None)
        if cached is not None:
            idle = time.monotonic() - cached.last_used
            # A connection used a moment ago is not checked with NOOP: if the server has
            # dropped it since, MAIL fails before any data left and the caller retries on a
            # fresh connection (``_attempt_smtp``).
            if (
                cached.fingerprint == account.connection_fingerprint()
                and idle <= _seconds("MAILROOM_CONNECTION_IDLE_SECONDS")
                and (idle <= _noop_after() or cached.client.noop())
            ):
                return cached.client, True
            self._quit(cached.client)
        client = client_for(account)
        caps = client.connect()
        self.opened += 1
        record_capabilities(account, caps.to_dict())
        return client, False

    def release(self, account: SmtpAccount, client) -> None:
        old = self._conns.pop(account.pk, None)
        if old is not None and old.client is not client:
            self._quit(old.client)
        self._conns[account.pk] = _Cached(client, account.connection_fingerprint(), time.monotonic())
        self.close_idle()

    def close_idle(self) -> None:
        limit = _seconds("MAILROOM_CONNECTION_IDLE_SECONDS")
        now = time.monotonic()
        for pk, cached in list(self._conns.items()):
            if now - cached.last_used > limit:
                self._conns.pop(pk, None)
                self._quit(cached.client)

    def close_all(self) -> None:
        while self._conns:
            _, cached = self._conns.popitem()
            self._quit(cached.client)

    @staticmethod
    def _quit(client) -> None:
        try:
            client.quit()
        except Exception:  # the connection is being dropped anyway
            client.close()


connections = ConnectionCache()


def _noop_after() -> float:
    return float(settings.MAILROOM_NOOP_AFTER_SECONDS)


# --- claim -------------------------------------------------------------------------------


def _claimable_accounts(now: datetime) -> Q:
    # Mail of a paused or throttled account waits; a message whose account was deleted is
    # claimed so that it can be failed with a clear reason. When a throttle has just run
    # out, one message goes first as a probe and the others wait for its answer
    # (``_serialise_probe`` makes that hold for claims at the same instant).
    sending_on_account = OutboxMessage.objects.filter(
        account=OuterRef("account"), status=Status.SENDING
    )
    return Q(account__isnull=True) | (
        Q(account__paused_at__isnull=True)
        & (
            Q(account__throttled_until__isnull=True)
            | (Q(account__throttled_until__lte=now) & ~Exists(sending_on_account))
        )
    )


def _due(now: datetime) -> Q:
    return Q(status=Status.QUEUED) | Q(
        status__in=[Status.SCHEDULED, Status.DEFERRED], next_attempt_at__lte=now
    )


def _serialise_probe(message_id: int) -> None:
    """After a throttle, claims on that account take its row lock first, so that the "one
    probe at a time" check (no message of the account in ``sending``) sees the other
    claims' commits: on PostgreSQL two claims at the same instant would otherwise both
    pass it. Only throttled accounts pay for the lock; SQLite serialises writers anyway."""
    throttled = SmtpAccount.objects.filter(
        throttled_until__isnull=False,
        pk__in=OutboxMessage.objects.filter(pk=message_id).values("account_id"),
    )
    list(throttled.select_for_update().values_list("pk", flat=True))


def claim(message_id: int, *, worker: str | None = None) -> tuple[OutboxMessage, DeliveryAttempt] | None:
    """Take the message for one delivery attempt, or return None if it is not due, already
    taken, or finished. The conditional UPDATE is what makes two workers safe."""
    now = timezone.now()
    attempt_id = uuid.uuid4()
    worker = worker or worker_name()
    with transaction.atomic():
        _serialise_probe(message_id)
        due_ids = OutboxMessage.objects.filter(_claimable_accounts(now)).filter(_due(now), pk=message_id)
        taken = OutboxMessage.objects.filter(pk__in=due_ids.values("pk")).filter(_due(now)).update(
            status=Status.SENDING,
            attempt_id=attempt_id,
            lease_until=now + timedelta(seconds=_seconds("MAILROOM_LEASE_SECONDS")),
            claimed_by=worker[:200],
            attempts=F("attempts") + 1,
            last_attempt_at=now,
            first_attempt_at=Coalesce("first_attempt_at", now),
            wait_reason="",
        )
        if taken != 1:
            return None
        attempt = DeliveryAttempt.objects.create(
            message_id=message_id, attempt_id=attempt_id, worker=worker[:200], started_at=now
        )
    message = OutboxMessage.objects.select_related("account").get(pk=message_id)
    return message, attempt


def _mark_end_of_data(message_id: int, attempt_id: uuid.UUID) -> None:
    """Called by the SMTP client right before the final chunk: from here on a lost worker
    (or a crashed database) means "outcome unknown". The commit is durable and returns
    before the final chunk is written, so the mark is on disk whenever the server may have
    the message. Also renews the lease, and stops if we no longer hold it."""
    now = timezone.now()
    with transaction.atomic():
        held = _update_rows(
            (OutboxMessage, {"pk": message_id, "attempt_id": attempt_id, "status": Status.SENDING},
             {"lease_until": now + timedelta(seconds=_seconds("MAILROOM_LEASE_SECONDS"))}),
            (DeliveryAttempt, {"attempt_id": attempt_id}, {"end_of_data_at": now}),
            durable=True,
        )
        if not held:
            raise LeaseLost(f"message {message_id}: lease lost before the end of data")


Update = tuple[type, dict, dict]  # (model, {field: value} to match, {field: value} to set)


def _update_sql(model, where: dict, values: dict) -> tuple[str, list]:
    """``model.objects.filter(**where).update(**values)`` for plain equality filters and
    plain values, as SQL without the ORM's query compiler: the delivery loop runs several
    of these per message, and compiling them cost more than running them. Values are
    converted by the fields themselves (``get_db_prep_save``), as the ORM does."""
    meta = model._meta
    ops = db_connection.ops

    def column(name: str):
        f = meta.pk if name == "pk" else meta.get_field(name)
        return f, ops.quote_name(f.column)

    sets, params = [], []
    for name, value in values.items():
        f, col = column(name)
        sets.append(f"{col} = %s")
        params.append(f.get_db_prep_save(value, db_connection))
    conds = []
    for name, value in where.items():
        f, col = column(name)
        conds.append(f"{col} = %s")
        params.append(f.get_db_prep_value(value, db_connection))
    table = ops.quote_name(meta.db_table)
    return f"UPDATE {table} SET {', '.join(sets)} WHERE {' AND '.join(conds)}", params


def _update_rows(first: Update, *then: Update, durable: bool = False) -> bool:
    """Run ``first``, and ``then`` only if ``first`` matched a row; return whether it did.
    All or nothing: on PostgreSQL one statement (data-modifying CTEs, so one round trip,
    atomic even outside a transaction); elsewhere in one transaction.

    ``durable`` (the end-of-data mark): on PostgreSQL the transaction's commit waits for
    its WAL flush even where the server, the database or the role is configured with
    asynchronous commits — no setting may turn an ``unknown`` into a blind resend.
    Set in the same statement (``set_config(…, true)``, i.e. ``SET LOCAL``): no extra
    round trip."""
    sql, params = _update_sql(*first)
    if db_connection.vendor == "postgresql":
        parts = [f"first AS ({sql} RETURNING 1)"]
        for n, update in enumerate(then):
            sql_n, params_n = _update_sql(*update)
            parts.append(f"u{n} AS ({sql_n} AND EXISTS (SELECT 1 FROM first))")
            params += params_n
        sources = "first"
        if durable:
            # A plain SELECT in a WITH runs only if referenced: hence the cross join.
            parts.append("flush AS (SELECT set_config('synchronous_commit', 'on', true))")
            sources = "first, flush"
        with db_connection.cursor() as cur:
            cur.execute(f"WITH {', '.join(parts)} SELECT count(*) FROM {sources}", params)
            return cur.fetchone()[0] > 0
    with transaction.atomic(), db_connection.cursor() as cur:
        cur.execute(sql, params)
        if cur.rowcount == 0:
            return False
        for update in then:
            cur.execute(*_update_sql(*update))
    return True


# --- deliver -----------------------------------------------------------------------------

# What one recipient's policy action means for its row.
_RECIPIENT_STATUS = {
    Action.DELIVER_OK: RStatus.ACCEPTED,
    Action.DEFER: RStatus.DEFERRED,
    Action.THROTTLE_ACCOUNT: RStatus.DEFERRED,
    Action.PAUSE_ACCOUNT: RStatus.DEFERRED,
    Action.SPLIT_RECIPIENTS: RStatus.PENDING,  # the rest go in another transaction, soon
    Action.UNKNOWN: RStatus.PENDING,
    Action.FAIL_RECIPIENT: RStatus.FAILED,
    Action.FAIL_MESSAGE: RStatus.FAILED,
    Action.TOO_BIG: RStatus.FAILED,
}


@dataclass
class _Result:
    """What one attempt learned, before it is written."""

    decision: policy.Decision | None = None  # the message-level decision, after an error
    error: BaseException | None = None
    # address -> (recipient status, code, enhanced, the server's words, plain-words reason)
    recipients: dict[str, tuple[str, int | None, str, str, str]] = field(default_factory=dict)
    reply: object | None = None
    transcript: list[str] = field(default_factory=list)
    throttled: bool = False  # the provider asked us to slow down
    split: bool = False  # some recipients wait for another transaction
    lease_lost: bool = False
    reused: bool = False  # sent over a cached connection


def deliver(message_id: int) -> str | None:
    """One delivery attempt for one message. Returns the attempt's outcome, or None if the
    message was not claimable (not due, taken by another worker, finished)."""
    claimed = claim(message_id)
    if claimed is None:
        log.debug("delivery entry=%s not claimable", message_id)
        return None
    message, attempt = claimed
    message.recipient_rows = list(message.recipients.all())
    pending = [r for r in message.recipient_rows if r.status in Recipient.RETRY_STATUSES]
    return _deliver_claimed(message, attempt, pending)


def _deliver_claimed(message: OutboxMessage, attempt: DeliveryAttempt, pending: list) -> str:
    started = time.monotonic()
    account = message.account
    if account is None:
        text = ("The account this message was to be sent from has been deleted. Edit the "
                "message as a new draft and choose another account.")
        result = _Result(decision=policy.Decision(Action.FAIL_MESSAGE, text, "account-deleted"))
        result.recipients = {r.address: (RStatus.FAILED, None, "", "", text) for r in pending}
    elif not pending:
        result = _Result()
    else:
        # The account's sending quota, across all workers: None is "send now".
        not_before = quotas.reserve(account)
        if not_before is not None and not_before > timezone.now():
            _release_for_quota(message, attempt, not_before)
            _log(message, account, "quota", started)
            return "quota"
        result = _attempt_smtp(message, attempt, account, pending)
    outcome = _record_retrying(message, attempt, account, result)
    _log(message, account, outcome, started)
    return outcome


# Outcomes after which the rest of a batch is not sent now: the account is paused,
# throttled or out of quota, and its other mail must wait as well.
_STOP_BATCH = {"quota", Outcome.PAUSED.value, Outcome.THROTTLED.value}


def drain(message_id: int, *, worker: str | None = None) -> list[str]:
    """The Celery task's body: deliver ``message_id`` and the rest of its account's due mail,
    claimed in batches (``claim_batch``), until none is due or ``MAILROOM_DRAIN_SECONDS``
    have passed (the sweeper and the other wake-ups carry on from there). Returns the
    outcomes, in order."""
    account_id = OutboxMessage.objects.filter(pk=message_id).values_list("account_id", flat=True).first()
    if account_id is None:
        # Not there any more, or its account was deleted: the single-message path fails
        # the latter with a clear reason.
        outcome = deliver(message_id)
        return [] if outcome is None else [outcome]
    from mailer import tasks

    # Woken through the account's flag: let the mail sent in the next moments join this
    # batch. Their sends see the flag still raised and ring no more, and one wake-up carries
    # them all (a burst of sends would otherwise wake a worker per message, each paying the
    # task, the claim and the final empty claim for one message). Other wake-ups (the
    # sweeper's, or every send's without Redis) do not wait: nothing gathers behind them.
    if tasks.flag_raised(account_id):
        time.sleep(_seconds("MAILROOM_DRAIN_GATHER_SECONDS"))
    # Before the first claim: a send committed from here on rings again (tasks.publish).
    tasks.lower_flag(account_id)
    limit = settings.MAILROOM_CLAIM_BATCH
    stop_at = time.monotonic() + _seconds("MAILROOM_DRAIN_SECONDS")
    outcomes: list[str] = []
    while True:
        if time.monotonic() >= stop_at:
            # Time is up with mail perhaps left: its sends may have rung for this drain
            # only (their wake-ups coalesced), so ring once more for the rest.
            tasks.publish(message_id, account_id=account_id)
            break
        batch = claim_batch(account_id, limit=limit, worker=worker)
        if not batch:
            break
        for n, (message, attempt, pending) in enumerate(batch):
            outcome = _deliver_claimed(message, attempt, pending)
            outcomes.append(outcome)
            if outcome in _STOP_BATCH:
                _give_back([a for _, a, _ in batch[n + 1:]])
                return outcomes
    return outcomes


def claim_batch(
    account_id: int, *, limit: int, worker: str | None = None
) -> list[tuple[OutboxMessage, DeliveryAttempt, list[Recipient]]]:
    """Claim up to ``limit`` due messages of one account in one statement, each with its own
    attempt id, lease and ``DeliveryAttempt`` row (written in the same transaction). Returns
    them in due order, with their pending recipients. Rows another worker holds locked are
    skipped, never waited for; a row is claimed by one worker only (the UPDATE is
    conditional on the row being due, and PostgreSQL re-checks that under the row lock)."""
    now = timezone.now()
    worker = (worker or worker_name())[:200]
    ops = db_connection.ops
    with transaction.atomic():
        throttled = list(
            SmtpAccount.objects.filter(pk=account_id, throttled_until__isnull=False)
            .select_for_update().values_list("pk", flat=True)
        )
        # After a throttle, one message goes first as a probe (see _claimable_accounts).
        inner = (
            OutboxMessage.objects.filter(_claimable_accounts(now))
            .filter(_due(now), account_id=account_id)
            .order_by("next_attempt_at", "pk")
            .values("pk")[: 1 if throttled else limit]
        )
        if db_connection.vendor == "postgresql":
            inner = inner.select_for_update(skip_locked=True, of=("self",))
            new_id = "gen_random_uuid()"
        else:
            new_id = "lower(hex(randomblob(16)))"  # Django's UUIDField on SQLite: 32 hex digits
        inner_sql, inner_params = inner.query.sql_with_params()
        table = OutboxMessage._meta.db_table
        due_statuses = [Status.QUEUED, Status.SCHEDULED, Status.DEFERRED]
        sql = (
            f"UPDATE {table} SET status = %s, attempt_id = {new_id}, lease_until = %s, "
            "claimed_by = %s, attempts = attempts + 1, last_attempt_at = %s, "
            "first_attempt_at = COALESCE(first_attempt_at, %s), wait_reason = '' "
            f"WHERE id IN ({inner_sql}) AND status IN (%s, %s, %s) RETURNING id, attempt_id"
        )
        stamp = ops.adapt_datetimefield_value(now)
        lease = ops.adapt_datetimefield_value(
            now + timedelta(seconds=_seconds("MAILROOM_LEASE_SECONDS"))
        )
        with db_connection.cursor() as cur:
            cur.execute(sql, [Status.SENDING, lease, worker, stamp, stamp, *inner_params,
                              *due_statuses])
            taken = {pk: uuid.UUID(str(aid)) for pk, aid in cur.fetchall()}
        if not taken:
            return []
        attempts = DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(message_id=pk, attempt_id=aid, worker=worker, started_at=now)
            for pk, aid in taken.items()
        )
    messages = OutboxMessage.objects.select_related("account").in_bulk(list(taken))
    pending: dict[int, list[Recipient]] = {pk: [] for pk in taken}
    for message in messages.values():
        message.recipient_rows = []  # all of them: _record_sent needs to know there are no others
    for r in Recipient.objects.filter(message_id__in=list(taken)):
        messages[r.message_id].recipient_rows.append(r)
        if r.status in Recipient.RETRY_STATUSES:
            pending[r.message_id].append(r)
    batch = [(messages[a.message_id], a, pending[a.message_id]) for a in attempts]
    batch.sort(key=lambda item: (item[0].next_attempt_at or now, item[0].pk))
    return batch


def _give_back(attempts: list[DeliveryAttempt]) -> None:
    """Claimed but not started (the account must wait): back to the queue, not counted as
    an attempt. Conditional on our attempt ids, like every write of a claim."""
    if not attempts:
        return
    now = timezone.now()
    ids = [a.attempt_id for a in attempts]
    with transaction.atomic():
        OutboxMessage.objects.filter(attempt_id__in=ids, status=Status.SENDING).update(
            status=Status.QUEUED, next_attempt_at=now, attempt_id=None, lease_until=None,
            claimed_by="", attempts=F("attempts") - 1,
        )
        DeliveryAttempt.objects.filter(attempt_id__in=ids).update(
            finished_at=now, outcome=Outcome.SKIPPED,
            reply_text="Not attempted: the account has to wait.",
        )


def _log(message, account, outcome, started) -> None:
    log.info(
        "delivery entry=%s account=%s outcome=%s seconds=%.3f",
        message.pk, account.pk if account else None, outcome, time.monotonic() - started,
    )


def _attempt_smtp(message, attempt, account, pending) -> _Result:
    from mailer.smtp import errors as smtp_errors

    client = None
    lease_lost = False
    marked = False

    def hook() -> None:
        nonlocal lease_lost, marked
        try:
            _mark_end_of_data(message.pk, attempt.attempt_id)
            marked = True
        except LeaseLost:
            lease_lost = True
            raise

    try:
        for fresh in (False, True):
            client, reused = connections.acquire(account)
            _clear_transcript(client)
            client.end_of_data_hook = hook
            try:
                with message.eml.open("rb") as fh:
                    send = client.send(
                        message.envelope_from, [r.address for r in pending], fh,
                        size_hint=message.size,
                    )
                break
            except (smtp_errors.SMTPServerDisconnected, ConnectionError) as exc:
                # A cached connection the server had closed (it was not checked with NOOP):
                # nothing of the data left (no end-of-data mark), so try once more on a new one.
                if fresh or not reused or marked or lease_lost:
                    raise
                log.info("delivery entry=%s cached connection was dead (%s); reconnecting",
                         message.pk, exc)
                client.end_of_data_hook = None
                client.close()
                client = None
    except Exception as exc:
        transcript = list(getattr(client, "transcript", None) or []) if client else []
        if client is not None:
            client.end_of_data_hook = None
            client.close()
        if lease_lost or isinstance(exc, LeaseLost):
            return _Result(error=exc, transcript=transcript, lease_lost=True)
        if not isinstance(exc, smtp_errors.SMTPError | OSError):
            log.exception("delivery entry=%s unexpected error", message.pk)
        return _failure_result(exc, pending, transcript, account)
    client.end_of_data_hook = None
    result = _Result(reply=send.data_reply, transcript=list(client.transcript or []), reused=reused)
    connections.release(account, client)
    for r in send.recipients:
        if r.accepted:
            rep = send.data_reply or r.reply
            result.recipients[r.address] = (RStatus.ACCEPTED, rep.code, rep.enhanced or "", rep.text, "")
        else:
            _refused(result, r)
    return result


def _refused(result: _Result, rr) -> None:
    """Record one recipient the server refused at RCPT, as the policy says."""
    decision = policy.classify_recipient(rr.reply)
    result.throttled |= decision.action == Action.THROTTLE_ACCOUNT
    result.split |= decision.action == Action.SPLIT_RECIPIENTS
    status = _RECIPIENT_STATUS.get(decision.action, RStatus.DEFERRED)
    result.recipients[rr.address] = (status, rr.reply.code, rr.reply.enhanced or "",
                                     rr.reply.text, decision.plain)


def _clear_transcript(client) -> None:
    # A reused connection's transcript holds earlier messages; each attempt keeps its own
    # (and its own size budget).
    client.transcript = []
    if hasattr(client, "_transcript_size"):
        client._transcript_size = 0
        client._transcript_full = False


def _size_limit(account) -> int | None:
    caps = account.capabilities or {} if account is not None else {}
    return caps.get("size") if isinstance(caps, dict) else None


def _failure_result(exc: BaseException, pending, transcript, account) -> _Result:
    decision = policy.classify_error(exc, limit=_size_limit(account))
    if decision.action is Action.UNKNOWN and policy.retry_unknown():
        # The setting prefers a possible duplicate to a loss: retry like a deferral.
        decision = replace(decision, action=Action.DEFER)
    reply = getattr(exc, "reply", None)
    result = _Result(decision=decision, error=exc, reply=reply, transcript=transcript)
    result.throttled = decision.action == Action.THROTTLE_ACCOUNT
    status = _RECIPIENT_STATUS.get(decision.action, RStatus.DEFERRED)
    if decision.action is Action.FAIL_RECIPIENT:
        # Every recipient refused for good at RCPT; each row below gets its own reply.
        status = RStatus.FAILED
    code = reply.code if reply is not None else None
    enhanced = (reply.enhanced or "") if reply is not None else ""
    # Per-recipient replies, when the server refused some at RCPT (all refused, or data refused).
    send = getattr(exc, "result", None)
    per_rcpt = {r.address: r for r in send.recipients} if send is not None else {}
    for r in pending:
        rr = per_rcpt.get(r.address)
        if rr is not None and not rr.accepted:
            _refused(result, rr)
        else:
            result.recipients[r.address] = (status, code, enhanced, decision.text, decision.plain)
    return result


def _next_try(message: OutboxMessage, now: datetime) -> datetime:
    """Postfix's rule (policy.backoff), but never past the maximum age: the try at that
    time is the last one."""
    first = message.first_attempt_at or now
    at = now + policy.backoff(first, now)
    give_up = first + timedelta(seconds=_seconds("MAILROOM_MAX_MESSAGE_AGE_SECONDS"))
    return min(at, max(give_up, now))


def _throttle(account: SmtpAccount, now: datetime) -> datetime:
    recent = DeliveryAttempt.objects.filter(
        message__account=account, outcome=Outcome.THROTTLED,
        started_at__gte=now - policy.throttle_window(),
    ).count()
    until = now + policy.throttle_delay(recent + 1)
    SmtpAccount.objects.filter(pk=account.pk).update(throttled_until=until)
    return until


# Waits between tries to record a result when the database connection failed.
_RECORD_RETRY_DELAYS = (0.2, 1.0, 3.0, 10.0)


def _record_retrying(message, attempt, account, result: _Result) -> str:
    """Record the result, reconnecting to the database if the connection died meanwhile.

    After the server's final reply the worker knows the outcome for certain; losing it
    with a dropped connection would leave the message to expire into ``unknown`` (and a
    user's "send again" would then duplicate it). We still hold the lease, so trying again
    on a fresh connection is safe: ``_record`` is one transaction, conditional on our
    attempt id."""
    for delay in (*_RECORD_RETRY_DELAYS, None):
        try:
            return _record(message, attempt, account, result)
        except (OperationalError, InterfaceError) as exc:
            if delay is None:
                raise
            log.warning("delivery entry=%s could not record its result (%s); reconnecting",
                        message.pk, exc)
            db_connection.close()
            time.sleep(delay)
    raise AssertionError("unreachable")


def _record(message: OutboxMessage, attempt: DeliveryAttempt, account, result: _Result) -> str:
    """Write the attempt's result, only if the message still carries our attempt id."""
    if result.lease_lost:
        log.warning("delivery entry=%s lost its lease before the end of data; not sent", message.pk)
        return "lease_lost"
    if _record_sent(message, attempt, account, result):
        return str(Outcome.SENT)
    now = timezone.now()
    action = result.decision.action if result.decision else None
    with transaction.atomic():
        held = OutboxMessage.objects.select_for_update().filter(
            pk=message.pk, attempt_id=attempt.attempt_id, status=Status.SENDING
        ).first()
        if held is None:
            recorded = DeliveryAttempt.objects.filter(pk=attempt.pk).values_list("outcome", flat=True).first()
            if recorded not in (Outcome.IN_PROGRESS, Outcome.LEASE_EXPIRED, Outcome.UNKNOWN, None):
                # Our own earlier try committed, but the database connection died before
                # it could say so (see _record_retrying): the result is already there.
                return str(recorded)
            log.warning("delivery entry=%s attempt %s no longer holds the message; result dropped",
                        message.pk, attempt.attempt_id)
            DeliveryAttempt.objects.filter(pk=attempt.pk).update(
                finished_at=now, outcome=Outcome.LEASE_EXPIRED, transcript="\n".join(result.transcript)
            )
            return "lease_lost"
        message = held
        rows = {r.address: r for r in message.recipients.all()}
        changed = []
        for address, (status, code, enhanced, text, reason) in result.recipients.items():
            r = rows.get(address)
            if r is not None:
                r.status, r.code, r.enhanced, r.updated_at = status, code, enhanced, now
                r.text, r.reason = text[:5000], reason[:5000]
                changed.append(r)
        waiting = [r for r in rows.values() if r.status in Recipient.RETRY_STATUSES]
        accepted = any(r.status == RStatus.ACCEPTED for r in rows.values())
        accepted_now = any(r.status == RStatus.ACCEPTED for r in changed)
        last_error = _words(result)
        wake_now = None
        update: dict = {"attempt_id": None, "lease_until": None, "claimed_by": "",
                        "last_error": last_error}

        if action is Action.UNKNOWN:
            update.update(status=Status.UNKNOWN, next_attempt_at=None)
            outcome = Outcome.UNKNOWN
        elif action is Action.PAUSE_ACCOUNT and account is not None:
            SmtpAccount.objects.filter(pk=account.pk, paused_at__isnull=True).update(
                paused_at=now, paused_reason=last_error
            )
            update.update(status=Status.DEFERRED, next_attempt_at=now,
                          wait_reason="The account is paused. " + last_error)
            outcome = Outcome.PAUSED
        elif waiting and policy.expired(message.first_attempt_at or now, now):
            age = _age_words(message, now)
            for r in waiting:
                r.status, r.updated_at = RStatus.FAILED, now
                r.reason = f"Gave up after {age}: {r.reason}"[:5000]
                if r not in changed:
                    changed.append(r)
            update.update(status=Status.SENT if accepted else Status.FAILED, next_attempt_at=None,
                          last_error=f"Gave up after {age}: {last_error}")
            if accepted:
                update["sent_at"] = message.sent_at or now
            outcome = Outcome.PARTIAL if accepted else Outcome.FAILED
        elif waiting:
            if result.split and accepted_now and not result.throttled:
                # 452 too many recipients: the rest go in the next transaction, right away.
                next_at = wake_now = now
            else:
                next_at = _next_try(message, now)
            if result.throttled and account is not None:
                next_at = max(next_at, _throttle(account, now))
            update.update(status=Status.DEFERRED, next_attempt_at=next_at,
                          wait_reason="Waiting to retry: " + last_error)
            outcome = Outcome.THROTTLED if result.throttled else (
                Outcome.PARTIAL if accepted_now else Outcome.DEFERRED)
        elif accepted:
            if account is not None and account.throttled_until is not None:
                # The provider accepted again: back to full speed.
                SmtpAccount.objects.filter(pk=account.pk, throttled_until__lte=now).update(
                    throttled_until=None
                )
            failed_any = any(r.status == RStatus.FAILED for r in rows.values())
            update.update(status=Status.SENT, next_attempt_at=None, sent_at=message.sent_at or now,
                          last_error=last_error if failed_any else "")
            outcome = Outcome.PARTIAL if failed_any else Outcome.SENT
        else:
            update.update(status=Status.FAILED, next_attempt_at=None)
            outcome = Outcome.FAILED
        if changed:
            Recipient.objects.bulk_update(changed, ["status", "code", "enhanced", "text", "reason",
                                                  "updated_at"])
        OutboxMessage.objects.filter(pk=message.pk).update(**update)
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            **_attempt_record(result, outcome, now)
        )
    if wake_now is not None:
        _enqueue_soon(message.pk)
    return str(outcome)


def _record_sent(message: OutboxMessage, attempt: DeliveryAttempt, account, result: _Result) -> bool:
    """The common case of ``_record`` in one statement on PostgreSQL, a few short ones
    elsewhere (no ORM compiling, no SELECT): every recipient of the message was accepted by this attempt, and there is no
    error, no decision and no throttle to lift. It writes what ``_record`` would write then,
    in one transaction, conditional on our attempt id like it. Returns False, having
    written nothing, when the case does not apply or the message is no longer ours; the
    general path then decides (and says why)."""
    rows = getattr(message, "recipient_rows", None)  # every row, read when claimed
    if (
        not rows
        or result.decision is not None
        or result.error is not None
        or result.lease_lost
        or account is None
        or account.throttled_until is not None
        or len(result.recipients) != len(rows)
        or any(result.recipients.get(r.address, ("",))[0] != RStatus.ACCEPTED for r in rows)
    ):
        return False
    now = timezone.now()
    recipients = [
        (Recipient, {"pk": r.pk}, {"status": RStatus.ACCEPTED, "code": code, "enhanced": enhanced,
                                   "text": text[:5000], "reason": reason[:5000], "updated_at": now})
        for r in rows
        for _status, code, enhanced, text, reason in [result.recipients[r.address]]
    ]
    return _update_rows(
        (OutboxMessage,
         {"pk": message.pk, "attempt_id": attempt.attempt_id, "status": Status.SENDING},
         {"status": Status.SENT, "attempt_id": None, "lease_until": None, "claimed_by": "",
          "last_error": "", "next_attempt_at": None, "sent_at": message.sent_at or now}),
        *recipients,
        (DeliveryAttempt, {"pk": attempt.pk}, _attempt_record(result, Outcome.SENT, now)),
    )


def _attempt_record(result: _Result, outcome, now: datetime) -> dict:
    """What an attempt's row says once it is over (``_record`` and ``_record_sent``)."""
    reply = result.reply
    return {
        "finished_at": now,
        "outcome": outcome,
        "reply_code": getattr(reply, "code", None),
        "reply_enhanced": getattr(reply, "enhanced", None) or "",
        "reply_text": getattr(reply, "text", None) or "",
        "error_class": type(result.error).__name__ if result.error is not None else "",
        "transcript": "\n".join(result.transcript),
        "connection_reused": result.reused,
        "recipients": [
            {"address": a, "status": s, "code": c, "enhanced": e, "text": t, "reason": why}
            for a, (s, c, e, t, why) in result.recipients.items()
        ],
    }


def _enqueue_soon(message_id: int) -> None:
    from mailer import tasks

    tasks.wake(message_id)


def _words(result: _Result) -> str:
    decision = result.decision
    if decision is not None and decision.code is not None:
        return decision.reason[:5000]
    # Recipients refused with their own replies (some of them, or all: then the error
    # itself carries no reply) say more than the error does.
    own = [f"{a}: {policy.with_server_words(why, c, e, t)}"
           for a, (s, c, e, t, why) in result.recipients.items()
           if s in (RStatus.FAILED, RStatus.DEFERRED) and (c is not None or decision is None)]
    if own or decision is None:
        return "; ".join(own)[:5000]
    return decision.reason[:5000]


def _age_words(message: OutboxMessage, now: datetime) -> str:
    secs = int((now - (message.first_attempt_at or now)).total_seconds())
    if secs >= 86400:
        return f"{secs // 86400} day(s)"
    if secs >= 3600:
        return f"{secs // 3600} hour(s)"
    return f"{max(secs // 60, 0)} minute(s)"


def _release_for_quota(message: OutboxMessage, attempt: DeliveryAttempt, not_before: datetime) -> None:
    """The quota says "not yet": give the message back, deferred to when it allows.
    Not counted as an attempt, and never a failure."""
    now = timezone.now()
    with transaction.atomic():
        OutboxMessage.objects.filter(
            pk=message.pk, attempt_id=attempt.attempt_id, status=Status.SENDING
        ).update(
            status=Status.DEFERRED, next_attempt_at=not_before, attempt_id=None, lease_until=None,
            claimed_by="", attempts=F("attempts") - 1,
            wait_reason=f"Waiting for the account's sending quota (until {not_before:%H:%M:%S} UTC).",
        )
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(finished_at=now, outcome=Outcome.SKIPPED,
                                                             reply_text="Sending quota reached.")


# --- sweep -------------------------------------------------------------------------------


@dataclass
class SweepReport:
    enqueued: list[int] = field(default_factory=list)
    reclaimed: int = 0
    unknown: int = 0
    released: int = 0


def sweep(*, enqueue=None) -> SweepReport:
    """Find every due message again (lost wake-ups, scheduled and deferred mail, released
    holds) and every expired lease. ``enqueue(id)`` defaults to the Celery task."""
    if enqueue is None:
        from mailer import tasks

        enqueue = tasks.publish
    report = SweepReport()
    now = timezone.now()
    batch = settings.MAILROOM_SWEEP_BATCH
    requeued = _reclaim_expired(now, report)

    # Scheduled (hold over, time come) and deferred (retry due) mail becomes queued now.
    due, report.released = _release_due(now, [Status.SCHEDULED, Status.DEFERRED], batch)
    # Queued mail nobody picked up for a while: its wake-up was lost (broker down,
    # purged queue, worker gone). Stamping next_attempt_at keeps it from being re-sent to
    # the broker at every sweep while it waits behind a backlog.
    grace = timedelta(seconds=2 * _seconds("MAILROOM_SWEEP_SECONDS"))
    lost = list(
        OutboxMessage.objects.filter(
            _claimable_accounts(now), status=Status.QUEUED, next_attempt_at__lte=now - grace
        ).order_by("next_attempt_at").values_list("pk", flat=True)[:batch]
    )
    if lost:
        OutboxMessage.objects.filter(pk__in=lost, status=Status.QUEUED).update(next_attempt_at=now)
    for pk in [*requeued, *due, *lost]:
        enqueue(pk)
        report.enqueued.append(pk)
    if report.enqueued or report.reclaimed:
        log.info("sweep enqueued=%d reclaimed=%d unknown=%d", len(report.enqueued),
                 report.reclaimed, report.unknown)
    return report


def _release_due(now: datetime, statuses: list[str], batch: int) -> tuple[list[int], int]:
    """Make due mail in ``statuses`` queued; return its ids and how many rows changed."""
    due = list(
        OutboxMessage.objects.filter(
            _claimable_accounts(now), status__in=statuses, next_attempt_at__lte=now,
        ).order_by("next_attempt_at").values_list("pk", flat=True)[:batch]
    )
    if not due:
        return [], 0
    released = OutboxMessage.objects.filter(pk__in=due, status__in=statuses).update(
        status=Status.QUEUED, next_attempt_at=now
    )
    return due, released


def release_holds(*, enqueue=None) -> list[int]:
    """The short wake-up for held mail (undo window, send later): scheduled messages whose
    time has come become queued and a worker is woken for each. Beat runs it every
    ``MAILROOM_RELEASE_SECONDS`` so that a 10 s undo window sends about 10 s after the
    click rather than at the next full sweep. No Celery ETA: the time is in the database."""
    if enqueue is None:
        from mailer import tasks

        enqueue = tasks.publish
    due, _ = _release_due(
        timezone.now(), [Status.SCHEDULED], settings.MAILROOM_SWEEP_BATCH
    )
    for pk in due:
        enqueue(pk)
    return due


def _reclaim_expired(now: datetime, report: SweepReport) -> list[int]:
    """Give up the claims of workers that vanished; return the ids to send again."""
    requeued = []
    expired = OutboxMessage.objects.filter(status=Status.SENDING, lease_until__lt=now).values_list(
        "pk", "attempt_id"
    )
    for pk, attempt_id in expired:
        attempt = DeliveryAttempt.objects.filter(attempt_id=attempt_id).first() if attempt_id else None
        after_data = attempt is not None and attempt.end_of_data_at is not None
        with transaction.atomic():
            if after_data and not settings.MAILROOM_RETRY_UNKNOWN:
                changes = {"status": Status.UNKNOWN, "next_attempt_at": None,
                           "last_error": "The worker delivering this message stopped after the "
                           "message data was sent, before the server's reply was recorded. The "
                           "server may have it: check before resending."}
            else:
                changes = {"status": Status.QUEUED, "next_attempt_at": now}
            done = OutboxMessage.objects.filter(
                pk=pk, attempt_id=attempt_id, status=Status.SENDING, lease_until__lt=now
            ).update(attempt_id=None, lease_until=None, claimed_by="", **changes)
            if not done:
                continue
            if attempt is not None:
                DeliveryAttempt.objects.filter(pk=attempt.pk).update(
                    finished_at=now,
                    outcome=Outcome.UNKNOWN if changes["status"] == Status.UNKNOWN else Outcome.LEASE_EXPIRED,
                )
        if changes["status"] == Status.UNKNOWN:
            report.unknown += 1
        else:
            report.reclaimed += 1
            requeued.append(pk)
    return requeued
