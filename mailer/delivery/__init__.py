"""The outbox state machine: claim, deliver, record, sweep.

The protocol (ARCHITECTURE invariants 1 and 3):

1. **Claim** in a short transaction: one conditional UPDATE moves due messages to
   ``sending``, each with a fresh ``attempt_id`` and a lease (``lease_until``); their
   ``DeliveryAttempt`` rows are written in the same transaction, before any network traffic.
   Only the worker whose UPDATE matched goes on.
2. **Talk SMTP with no transaction open.** Right before the final chunk of the data goes
   out, ``end_of_data_at`` is stamped on the attempt in a durable commit (and the lease is
   checked: a worker that has lost its lease stops there, so the message is not sent twice).
3. **Record** right after the server's final reply, and only if the message still carries
   our ``attempt_id``. What the reply means is ``mailer.policy``'s (``after_reply``). In a
   batch, the record is written in the same durable commit as the next message's mark
   (``rows.write_groups``): one WAL flush for both. Before a large next message
   (``attempt._GROUP_MAX_BYTES``) it is written on its own first, so that no upload keeps
   it waiting; and if the next message never reaches its end of data, right after.
4. **Sweep** (Celery beat): enqueue every due row, reclaim expired leases. A lease that
   expired after ``end_of_data_at`` becomes ``unknown`` (the server may have the message);
   one that expired before it is retried safely.

The remaining duplicate window: a worker killed between the server's final 250 and its
record's commit (in a batch, until the next message's mark). The message then becomes
``unknown`` (not resent) unless ``MAILROOM_RETRY_UNKNOWN`` is set.

**Batches** (``drain``): one wake-up lets a worker drain the due mail of one account,
claimed up to ``MAILROOM_CLAIM_BATCH`` at a time and sent one after another over the cached
connection, each with its own end-of-data mark (which renews that message's lease) and its
own record (written with the next message's mark). Where the server pipelines (without
CHUNKING), the next message's MAIL, RCPTs and DATA go out right behind this one's end of
data (RFC 2920), so a message after the first costs one round trip; its own data still
waits for its own mark, and an envelope sent ahead for a message that is then not sent
(quota, pause, a stopped batch) has its connection closed, its DATA never ended. A worker
killed mid-batch leaves the rest of the batch in ``sending`` with no end-of-data mark: the
sweeper gives each back to the queue when its lease expires, and only a message whose *own*
mark was committed becomes ``unknown``.

**Every commit here is durable.** The claim, the end-of-data mark and the record are ordinary
commits: on PostgreSQL each returns only once its WAL is flushed (``synchronous_commit`` at
its default, ``on``; nothing here lowers it, and the mark insists on it). A crash of the
worker, of the PostgreSQL server or of its machine after the mark finds it after recovery,
and the sweeper makes the message ``unknown``
(``tests/mailer/test_it_keeps_the_mark_through_a_database_crash.py``, and the
``pg-crash`` scenario of ``bench/faults.py``). Throughput comes from doing fewer commits
(one claim statement per batch, one statement per record), never from weaker ones.

The modules, in the order a message meets them:

- ``claiming`` — take due messages (one path: a batch; one message is a batch of one).
- ``cache`` — the SMTP client for an account, and this worker's open connections.
- ``attempt`` — one attempt: connect or reuse, send, the end-of-data mark, the replies.
- ``recording`` — write what the attempt learned, as ``policy.after_reply`` decides.
- ``rows`` — the conditional multi-row writes the mark and the record are made of.
- ``worker`` — a wake-up's work: ``deliver`` one message, ``drain`` an account.
- ``sweep`` — beat's pass: due mail, lost wake-ups, expired leases.
"""

from mailer.delivery.attempt import LeaseLost
from mailer.delivery.cache import client_for, connections, record_capabilities
from mailer.delivery.claiming import claim, claim_batch, worker_name
from mailer.delivery.sweep import SweepReport, release_holds, sweep
from mailer.delivery.worker import deliver, deliver_claimed, drain

__all__ = [
    "LeaseLost",
    "SweepReport",
    "claim",
    "claim_batch",
    "client_for",
    "connections",
    "deliver",
    "deliver_claimed",
    "drain",
    "record_capabilities",
    "release_holds",
    "sweep",
    "worker_name",
]
