#!/usr/bin/env python3
"""The fault suite: nothing lost, nothing sent twice — shown with figures.

    .venv/bin/python bench/faults.py            # the full run (several minutes)
    .venv/bin/python bench/faults.py --quick    # shorter outages, fewer messages (< ~3 min)
    .venv/bin/python bench/faults.py --only worker-sigkill --only hostile-silent

It starts real components, breaks them on purpose and counts, at the SMTP servers, what
was delivered once, twice, or not at all:

* its own ``redis-server`` on a free loopback port (the machine's shared Redis on 6379 is
  never touched), a fresh PostgreSQL database ``mailroom_faults_<pid>`` on 127.0.0.1:5432
  (created, migrated, dropped at the end), a Celery beat and real ``celery -A config worker``
  processes pointed at them, aiosmtpd sinks that record every (Message-ID, recipient) they
  accept, and the hostile servers of ``tests/hostile_servers.py``;
* scenarios, each on its own account with many messages in flight: a worker SIGKILLed
  mid-batch and restarted (and, in full runs, the same with ``MAILROOM_RETRY_UNKNOWN`` on,
  which opens the documented duplicate window); Redis stopped mid-batch and started again
  30 s later (5 s with ``--quick``); mail sent while the broker is down (the wake-up is
  lost, the sweeper must deliver); the workers' PostgreSQL connections killed
  (``pg_terminate_backend``); PostgreSQL itself crashed right after a message's
  end-of-data mark (on a private cluster of its own, ``tests/pg_crash.py``: that message
  must be ``unknown``, not resent); each hostile server, which then heals (relays to a
  good sink) so that "lost" can be judged; two and four workers racing over the same due
  messages;
* past the first hop, with a private Dovecot (``tests/imap_server.py``) behind a proxy that
  breaks IMAP sessions on cue (``bench/_imap_proxy.py``): a worker SIGKILLed after Dovecot
  stored its Sent copy but before the worker heard it (``sent-copy-sigkill``: one copy per
  message, never two), and bounce reports polled while the proxy cuts a FETCH and a worker
  is killed mid-poll (``bounce-polling``: each reported recipient bounced once, nothing
  else marked). Their once/twice/lost also count the copy or the report (their
  docstrings say how).

A message counts as *delivered once* when every recipient reached a good server exactly
once, *duplicated* when any recipient got it twice, and *lost* when some recipient never
got it and the message is not in a final state that says why (``failed`` with the
server's words, or ``unknown``): vanished, stuck, or "sent" without the server having it.
Expected: lost = 0 everywhere; duplicated = 0 except the documented window (a worker
killed between the server's final 250 and the commit), at most the messages in flight at
the kill — the ``bound`` column. The last line is exactly
``TOTAL scenarios=N queued=N delivered_once=N duplicated=N lost=N``; the exit status is 0
only when lost = 0 and every scenario stayed within its bound.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ports import free_port  # noqa: E402

LOOPBACK = "127.0.0.1"
SETTINGS_MODULE = "bench._faults_settings"
PG = {"host": LOOPBACK, "port": 5432, "user": "postgres"}
FINAL = ("sent", "failed", "unknown", "cancelled")
# An attachment that makes the .eml larger than loopback socket buffers absorb (~4.5 MB),
# so that a server resetting the connection in the middle of DATA surely cuts it short.
BIG_ATTACHMENT = 6 * 1024 * 1024


@dataclass(frozen=True)
class Plan:
    quick: bool
    batch: int  # messages per infrastructure scenario
    hostile: int  # messages per hostile server
    race: int  # messages the racing workers share
    outage: float  # seconds Redis stays down
    settle: float  # seconds a scenario may take to reach final states
    lease: int  # MAILROOM_LEASE_SECONDS for the workers

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(True, batch=40, hostile=6, race=100, outage=5, settle=120, lease=8)
        return cls(False, batch=200, hostile=20, race=500, outage=30, settle=300, lease=15)


@dataclass
class Row:
    scenario: str
    queued: int = 0
    once: int = 0
    twice: int = 0
    lost: int = 0
    bound: int = 0  # duplicates allowed (messages in flight at a kill)
    states: collections.Counter = field(default_factory=collections.Counter)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.twice <= self.bound


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- services of our own ----------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free loopback port, no persistence: stopping it
    loses every queued wake-up, as a crashed broker would."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        self.process = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly",
             "no", "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=0.5)
        if not wait_for(lambda: _pings(client), 10):
            raise SystemExit(f"our redis-server did not answer on {LOOPBACK}:{self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


class FreshDatabase:
    """``mailroom_faults_<pid>`` on the local PostgreSQL, created and dropped by us."""

    def __init__(self) -> None:
        self.name = f"mailroom_faults_{os.getpid()}"

    @property
    def url(self) -> str:
        return f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{self.name}"

    def _admin(self):
        import psycopg

        return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **PG)

    def create(self) -> None:
        try:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{self.name}"')
        except Exception as exc:
            raise SystemExit(f"PostgreSQL on {PG['host']}:{PG['port']} is needed: {exc}") from exc

    def drop(self) -> None:
        with contextlib.suppress(Exception), self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def terminate_backends(self, keep: set[int]) -> int:
        """Kill every connection to our database but the harness's own (``keep``)."""
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND NOT pid = ANY(%s) AND pid <> pg_backend_pid()",
                (self.name, sorted(keep)),
            ).fetchall()
        return sum(1 for (done,) in rows if done)


class Beat:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self._log = open(workdir / "beat.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
             "-s", str(workdir / "beat-schedule")],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


# --- the laboratory -----------------------------------------------------------------------


class Lab:
    """Everything the scenarios share: services, Django in this process, workers, sinks."""

    def __init__(self, plan: Plan, keep: bool) -> None:
        self.plan = plan
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix="mailroom-faults-"))
        self.redis = PrivateRedis(self.workdir)
        self.db = FreshDatabase()
        self.workers: list = []
        self._concurrency: dict[int, int] = {}
        self._workers_lock = threading.Lock()
        self._supervising = threading.Event()
        self.restarts: list[str] = []  # why supervised workers died (restarted)
        self.beat: Beat | None = None
        self.sinks: list = []  # every good server, for counting
        self.servers: list = []  # everything to stop at the end
        self.env: dict[str, str] = {}
        self.user = None
        self.certificates = None
        self.own_pids: set[int] = set()  # the harness's own PostgreSQL backends
        self.worker_env: dict[str, str] = {}  # extra settings for the workers started now
        self._accounts = 0
        self._dovecot = None  # started by the first IMAP scenario

    # -- set-up and tear-down
    def __enter__(self) -> Lab:
        from cryptography.fernet import Fernet

        log(f"work directory {self.workdir}")
        self.redis.start()
        self.db.create()
        self.env = {
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "MAILROOM_ENV": "development",
            "MAILROOM_DATA_DIR": str(self.workdir / "data"),
            "DATABASE_URL": self.db.url,
            "CELERY_BROKER_URL": f"{self.redis.url}/0",
            "MAILROOM_REDIS_URL": f"{self.redis.url}/1",
            "MAILROOM_CREDENTIALS_KEYS": Fernet.generate_key().decode(),
            "SECRET_KEY": Fernet.generate_key().decode(),
            # Short timings so that sweeps, expired leases and retries happen in seconds.
            "MAILROOM_SWEEP_SECONDS": "1",
            "MAILROOM_LEASE_SECONDS": str(self.plan.lease),
            "MAILROOM_MIN_BACKOFF_SECONDS": "1",
            "MAILROOM_MAX_BACKOFF_SECONDS": "2",
            "MAILROOM_CONNECTION_IDLE_SECONDS": "5",
            "MAILROOM_DEFAULT_HOLD_SECONDS": "0",
            "MAILROOM_THROTTLE_SECONDS": "1",
            # A silent server is given up on after 10 s rather than the production minute.
            "MAILROOM_SMTP_COMMAND_TIMEOUT": "10",
            # IMAP: a killed worker's Sent-copy claim (3 x this timeout) runs out in 9 s, and
            # accounts tracking reports are polled every second.
            "MAILROOM_IMAP_TIMEOUT": "3",
            "MAILROOM_REPORT_POLL_SECONDS": "1",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update(self.env)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                       cwd=ROOT, env=dict(os.environ), check=True)
        import django

        django.setup()
        import logging

        # The sinks' per-connection chatter and the "could not wake a worker" warnings of the
        # broker-down scenario would bury the progress lines.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        logging.getLogger("mailer.tasks").setLevel(logging.ERROR)
        import trustme
        from django.contrib.auth import get_user_model

        from tests.smtp_servers import TLSCertificates

        self.user = get_user_model().objects.create_user("faults", password=None)
        ca = trustme.CA()
        ca_file = self.workdir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        self.certificates = TLSCertificates(ca, ca.issue_cert("127.0.0.1"), str(ca_file))
        self.start_beat()
        self._supervising.set()
        threading.Thread(target=self._supervise, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._supervising.clear()
        self.stop_workers()
        self.stop_beat()
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        from django.db import connections

        connections.close_all()
        self.redis.stop()
        self.db.drop()
        if self.keep:
            log(f"kept {self.workdir} (logs of the workers, beat and redis)")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def register_connection(self) -> None:
        """Remember this thread's PostgreSQL backend, so that pg-terminate spares it."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.own_pids.add(cursor.fetchone()[0])

    # -- beat and workers
    def start_beat(self) -> None:
        self.beat = Beat(dict(os.environ), self.workdir)

    def stop_beat(self) -> None:
        if self.beat is not None:
            self.beat.stop()
            self.beat = None

    def start_workers(self, n: int, concurrency: int = 2, lease: int | None = None) -> None:
        from tests.workers import Worker

        env = {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
               "MAILROOM_LEASE_SECONDS": str(lease or self.plan.lease), **self.worker_env}
        fresh = [Worker(concurrency=concurrency, env=env) for _ in range(n)]
        for worker in fresh:
            worker.wait_ready(timeout=60)
        with self._workers_lock:
            self.workers += fresh
            self._concurrency.update({id(w): (concurrency, lease) for w in fresh})

    def take_worker(self, worker=None):
        """Remove a worker (the first, or ``worker``) from supervision, to kill it."""
        with self._workers_lock:
            if worker is None:
                return self.workers.pop(0)
            self.workers.remove(worker)
            return worker

    def worker_on_port(self, port: int):
        """The supervised worker one of whose processes (the main one or a pool child) has
        a loopback TCP connection from local ``port``, or None."""
        import psutil

        with self._workers_lock:
            workers = list(self.workers)
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                main = psutil.Process(worker.process.pid)
                for proc in [main, *main.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        if any(c.laddr and c.laddr.port == port
                               for c in proc.net_connections(kind="tcp")):
                            return worker
        return None

    def stop_workers(self) -> None:
        while True:
            with self._workers_lock:
                if not self.workers:
                    return
                worker = self.workers.pop()
            worker.stop(grace=20)

    def _supervise(self) -> None:
        """Restart a worker that died on its own, as the production supervisor does
        (docker-compose ``restart: unless-stopped``), and remember why it died."""
        while self._supervising.is_set():
            with self._workers_lock:
                dead = [w for w in self.workers if w.process.poll() is not None]
                for w in dead:
                    self.workers.remove(w)
            for w in dead:
                why = next(
                    (
                        line.split("] ", 1)[-1]
                        for line in w.log.splitlines()
                        if "Unrecoverable error" in line
                    ),
                    f"exit status {w.process.returncode}",
                )
                self.restarts.append(why[:160])
                log(f"worker {w.name} died ({why[:160]}); restarting it")
                with contextlib.suppress(Exception):
                    self.start_workers(1, *self._concurrency.get(id(w), (2, None)))
            time.sleep(0.5)

    def log_worker_errors(self) -> None:
        """The most frequent error lines of every worker so far, for a failed scenario."""
        lines = collections.Counter()
        for path in (self.workdir / "data").glob("worker-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if "ERROR" in line or "CRITICAL" in line or line.startswith(
                        ("django.db.utils.", "psycopg.", "AttributeError", "KeyError")):
                    lines[line.split("] ", 1)[-1][:200]] += 1
        for text, n in lines.most_common(8):
            log(f"  worker log x{n}: {text}")

    # -- servers and accounts
    def sink(self, **options):
        from tests.hostile_servers import start_sink

        server = start_sink(**options)
        self.sinks.append(server)
        self.servers.append(server)
        return server

    def hostile(self, behaviour: str, upstream):
        from tests.hostile_servers import HostileServer

        server = HostileServer(behaviour, upstream=(upstream.host, upstream.port)).start()
        self.servers.append(server)
        return server

    def account(self, port: int, *, security: str = "none"):
        from mailer.models import SmtpAccount

        self._accounts += 1
        return SmtpAccount.objects.create(
            owner=self.user, label=f"faults {self._accounts}", from_address="sender@example.com",
            host=LOOPBACK, port=port, security=security, auth_mechanism="none",
            verify_tls=True,
            ca_certificate=self.certificates.ca_pem if security != "none" else "",
        )

    def dovecot(self):
        """The lab's private Dovecot (``tests/imap_server.py``), started on first use, in a
        directory of the work directory that its processes (its own users, when run as
        root) can reach."""
        if self._dovecot is None:
            from tests.imap_server import DOVECOT, start_dovecot

            if not os.access(DOVECOT, os.X_OK):
                raise SystemExit(f"the IMAP scenarios need Dovecot at {DOVECOT} "
                                 "(Debian: apt-get install dovecot-imapd)")
            self.workdir.chmod(0o711)  # passable, not listable, for Dovecot's own users
            directory = self.workdir / "dovecot"
            directory.mkdir()
            directory.chmod(0o755)
            users = {f"imap{i}": secrets.token_urlsafe(12) for i in range(1, 5)}
            self._dovecot = start_dovecot(directory, users, quota="200M")
            self.servers.append(self._dovecot)
        return self._dovecot

    def imap_proxy(self, **options):
        """A proxy in front of the lab's Dovecot that can break sessions on cue."""
        from bench._imap_proxy import ImapProxy

        proxy = ImapProxy(self.dovecot().tls_port, self.dovecot().ca_pem,
                          self.certificates.server_context(), **options).start()
        self.servers.append(proxy)
        return proxy

    def imap_account(self, proxy, user: str, **imap):
        """A fresh account on a fresh counting sink whose IMAP side is ``user`` on the lab's
        Dovecot, reached through ``proxy`` (implicit TLS, verified with the lab's CA)."""
        from mailer.models import ImapSettings

        account = _good_account(self)
        account.ca_certificate = self.certificates.ca_pem
        account.from_address = f"{user}@example.com"
        account.save(update_fields=["ca_certificate", "from_address"])
        settings_ = ImapSettings(account=account, host=LOOPBACK, port=proxy.port,
                                 security="tls", username=user, **imap)
        settings_.set_secret(self.dovecot().users[user])
        settings_.save()
        return account

    # -- mail
    def queue(self, account, n: int, *, recipients: int = 1, big: int = 0,
              ids: list[int] | None = None) -> list[int]:
        """Send ``n`` drafts through the real send service; the first ``big`` carry an
        attachment larger than the socket buffers. Returns the outbox ids (appended to
        ``ids`` as they are sent, when given)."""
        from django.core.files.base import ContentFile

        from mailer import services
        from mailer.models import Attachment, Draft

        blob = os.urandom(BIG_ATTACHMENT) if big else b""
        ids = [] if ids is None else ids
        for i in range(n):
            draft = Draft.objects.create(
                owner=self.user, account=account,
                to=", ".join(f"rcpt{j}-{account.pk}-{i}@example.com" for j in range(recipients)),
                subject=f"fault test {account.label} #{i}",
                body_text=f"Message {i} of {n}.\n" + "Some text to make it a real message.\n" * 20,
            )
            if i < big:
                Attachment.objects.create(
                    draft=draft, file=ContentFile(blob, name="big.bin"), filename="big.bin",
                    content_type="application/octet-stream", size=len(blob),
                    sha256=hashlib.sha256(blob).hexdigest(),
                )
            ids.append(services.send_draft(self.user, draft, hold_seconds=0).pk)
        return ids

    def count(self, ids: list[int], *states: str) -> int:
        from mailer.models import OutboxMessage

        return OutboxMessage.objects.filter(pk__in=ids, status__in=states).count()

    def settle(self, ids: list[int], timeout: float | None = None) -> bool:
        """Wait until every message is in a final state."""
        return wait_for(lambda: self.count(ids, *FINAL) == len(ids), timeout or self.plan.settle,
                        step=0.5)

    def conclude(self, row: Row, ids: list[int], thread: threading.Thread | None = None) -> Row:
        """Wait for the queueing thread and for final states, then count."""
        if thread is not None:
            thread.join()
        self.settle(ids)
        return self.judge(row, ids)

    def judge(self, row: Row, ids: list[int],
              also: Callable[[object, Row], None] | None = None) -> Row:
        """Count every message at the sinks; ``also(message, verdict)`` may then judge more
        of it (its Sent copy, its bounce), moving its one-message ``verdict`` from once to
        twice or lost."""
        from mailer.models import DeliveryAttempt, OutboxMessage, Recipient
        from tests.hostile_servers import deliveries

        counts = deliveries(*self.sinks)
        row.queued = len(ids)
        messages = OutboxMessage.objects.filter(pk__in=ids).prefetch_related("recipients")
        for m in messages:
            got = {r.address.lower(): counts[(m.message_id.strip(), r.address.lower())]
                   for r in m.recipients.all()}
            failed = {r.address.lower() for r in m.recipients.all()
                      if r.status == Recipient.Status.FAILED and r.text}
            verdict = Row(row.scenario)
            tally(verdict, m.status, m.last_error, got, failed)
            if also is not None:
                also(m, verdict)
            row.states.update(verdict.states)
            row.once += verdict.once
            row.twice += verdict.twice
            row.lost += verdict.lost
        missing = len(ids) - messages.count()
        if missing:
            row.lost += missing
            row.notes.append(f"{missing} outbox rows vanished")
        errors = collections.Counter(
            DeliveryAttempt.objects.filter(message_id__in=ids).exclude(error_class="")
            .values_list("error_class", flat=True)
        )
        if errors:
            row.notes.append("attempts failed with " + ", ".join(
                f"{name} x{n}" for name, n in errors.most_common()))
        return row


def tally(row: Row, status: str, last_error: str, got: dict[str, int], failed: set[str]) -> None:
    """Count one message: ``got`` is how often each recipient received it, ``failed`` the
    recipients refused for good (with the server's words)."""
    row.states[status] += 1
    if got and max(got.values()) > 1:
        row.twice += 1
    elif got and all(v == 1 for v in got.values()):
        row.once += 1
    elif status in ("failed", "unknown", "cancelled") and (last_error or failed):
        pass  # not delivered, and the final state says why
    elif all(v == 1 or a in failed for a, v in got.items()):
        pass  # delivered to every recipient the server did not refuse for good
    else:
        row.lost += 1


# --- scenarios ---------------------------------------------------------------------------


def _queue_in_background(lab: Lab, account, n: int, **kw) -> tuple[threading.Thread, list[int]]:
    """Queue from a thread, so a fault can strike while sending is still going on."""
    from django.db import connection

    ids: list[int] = []

    def run() -> None:
        try:
            lab.register_connection()
            lab.queue(account, n, ids=ids, **kw)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, ids


def _good_account(lab: Lab):
    """A fresh account on a fresh counting sink."""
    return lab.account(lab.sink().port)


def _in_flight(lab: Lab) -> int:
    from mailer.models import OutboxMessage

    return OutboxMessage.objects.filter(status="sending").count()


def _kill_mid_batch(lab: Lab, row: Row, kills: int) -> Row:
    """SIGKILL a worker (and its pool children) ``kills`` times during a batch, restarting
    one each time. The duplicate bound grows by the messages in flight at each kill."""
    account = _good_account(lab)
    thread, ids = _queue_in_background(lab, account, lab.plan.batch)
    for k in range(kills):
        target = lab.plan.batch * (k + 1) // (kills + 2)
        wait_for(lambda t=target: len(ids) >= t and lab.count(ids, "sent") >= t // 2, 60, 0.02)
        in_flight = _in_flight(lab)
        victim = lab.take_worker()
        victim.kill()
        row.bound += in_flight
        row.notes.append(f"kill {k + 1}: {in_flight} in flight")
        time.sleep(1)
        lab.start_workers(1, concurrency=3)
    return lab.conclude(row, ids, thread)


def worker_sigkill(lab: Lab) -> Row:
    """A worker killed with SIGKILL mid-batch, then restarted (the default policy: a
    message cut after its data is ``unknown``, never resent on its own)."""
    return _kill_mid_batch(lab, Row("worker-sigkill"), 1 if lab.plan.quick else 2)


def worker_sigkill_retry_unknown(lab: Lab) -> Row:
    """The same with ``MAILROOM_RETRY_UNKNOWN`` on (a duplicate preferred to a loss): the
    documented window opens, and duplicates must stay within the messages in flight."""
    lab.stop_workers()
    lab.worker_env = {"MAILROOM_RETRY_UNKNOWN": "true"}
    try:
        lab.start_workers(2, concurrency=3)
        return _kill_mid_batch(lab, Row("worker-sigkill-retry-unk"), 3)
    finally:
        lab.worker_env = {}
        lab.stop_workers()
        lab.start_workers(2, concurrency=3)


def redis_outage(lab: Lab) -> Row:
    """Redis stopped during a batch (every queued wake-up with it), started again later."""
    row = Row("redis-outage")
    account = _good_account(lab)
    thread, ids = _queue_in_background(lab, account, lab.plan.batch)
    # Strike while the batch is still being sent: some delivered, some waiting in Redis,
    # the rest not yet queued (their wake-ups will find no broker).
    wait_for(lambda: len(ids) >= lab.plan.batch // 3 and lab.count(ids, "sent") >= 1, 60, 0.01)
    row.notes.append(f"{lab.count(ids, *FINAL)} of {lab.plan.batch} final when Redis stopped")
    lab.redis.stop()
    time.sleep(lab.plan.outage)
    lab.redis.start()
    row.notes.append(f"down {lab.plan.outage:g} s")
    return lab.conclude(row, ids, thread)


def broker_down_at_send(lab: Lab) -> Row:
    """Mail sent while the broker is down: every wake-up is lost, the sweeper delivers."""
    row = Row("broker-down-at-send")
    account = _good_account(lab)
    lab.redis.stop()
    started = time.monotonic()
    ids = lab.queue(account, lab.plan.batch // 4)
    per_send = (time.monotonic() - started) / max(len(ids), 1)
    row.notes.append(f"send_draft took {per_send * 1000:.0f} ms each with the broker down")
    lab.redis.start()
    return lab.conclude(row, ids)


def pg_terminate(lab: Lab) -> Row:
    """The workers' PostgreSQL connections killed again and again during a batch."""
    row = Row("pg-terminate")
    account = _good_account(lab)
    lab.register_connection()
    thread, ids = _queue_in_background(lab, account, lab.plan.batch)
    wait_for(lambda: lab.count(ids, "sent") >= 1, 60, 0.02)
    killed = 0
    deadline = time.monotonic() + (5 if lab.plan.quick else 20)
    while time.monotonic() < deadline and (thread.is_alive() or lab.count(ids, *FINAL) < len(ids)):
        killed += lab.db.terminate_backends(keep=lab.own_pids)
        time.sleep(0.1)
    thread.join()
    row.notes.append(f"{killed} connections killed")
    return lab.conclude(row, ids)


def pg_crash(lab: Lab) -> Row:
    """PostgreSQL itself crashes (``pg_ctl stop -m immediate``) while a server holds a
    message's data and has not answered, and the worker dies with it (the machine losing
    power); then PostgreSQL recovers and the sweeper carries on. It needs a cluster of its
    own (``tests/pg_crash.py``: initdb on a free port; the shared one is never stopped), so
    it runs its own child processes there rather than this lab's workers. The message in
    the window must be ``unknown`` (its durable mark survived), every other one sent once."""
    from tests import pg_crash as crash

    missing = crash.available()
    if missing is not None:
        raise SystemExit(f"the pg-crash scenario needs {missing}")
    row = Row("pg-crash")
    n = max(lab.plan.batch // 2, 3)
    outcome = crash.run(messages=n, crash_at=n // 3)
    row.queued = n
    for m in outcome.messages:
        tally(row, m["status"], m["last_error"], {"to": outcome.times_received(m)}, set())
        if m["message_id"] == outcome.crashed:
            row.notes.append(f"message {n // 3} in the window at the crash: {m['status']}")
    if len(outcome.messages) < n:
        row.lost += n - len(outcome.messages)
        row.notes.append(f"{n - len(outcome.messages)} outbox rows vanished")
    return row


def _sent_copies(lab: Lab, user: str) -> collections.Counter:
    """How many copies of each Message-ID ``user``'s Sent folder holds (read from Dovecot
    directly, not through the proxy)."""
    from email.parser import BytesHeaderParser

    with lab.dovecot().client(user) as client:
        client.select_folder("Sent", readonly=True)
        uids = client.search("ALL")
        fetched = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    parser = BytesHeaderParser()
    found: collections.Counter = collections.Counter()
    for data in fetched.values():
        header = next(v for k, v in data.items() if k.startswith(b"BODY"))
        found[str(parser.parsebytes(header).get("Message-ID", "")).strip()] += 1
    return found


def _copies_final(ids: list[int]) -> bool:
    """Every message with an accepted recipient has a copy saved, or failed for a reason."""
    from mailer.models import OutboxMessage, SentCopy

    due = OutboxMessage.objects.filter(pk__in=ids, recipients__status="accepted").distinct()
    done = SentCopy.objects.filter(message_id__in=ids, status__in=("saved", "failed"))
    return done.count() >= due.count()


def sent_copy_sigkill(lab: Lab) -> Row:
    """The Sent copy's crash window: a worker SIGKILLed after Dovecot stored its APPEND
    and answered ``OK [APPENDUID ...]``, before the worker heard it and recorded the copy.
    A proxy (``bench/_imap_proxy.py``) holds that answer and names the connection; the lab
    kills the worker owning it, several times in a batch, and starts another each time.
    The killed claim runs out (3 x ``MAILROOM_IMAP_TIMEOUT`` = 9 s), beat's pass takes the
    copy again, and the SEARCH before the APPEND must find the copy already there.

    Counted per message, at the SMTP sink as usual *and* in Dovecot's Sent folder by
    Message-ID: once = delivered once and exactly one copy; twice = delivered twice or two
    copies or more; lost = not delivered (as usual), or accepted with no copy while its
    SentCopy is not ``failed`` with a reason. No duplicate is allowed (bound 0): under the
    default policy a kill never resends mail, and a second copy is exactly the bug."""
    from mailer.models import Recipient, SentCopy

    row = Row("sent-copy-sigkill")
    n, kills = (30, 3) if lab.plan.quick else (100, 6)
    user = "imap1"
    proxy = lab.imap_proxy(hold=5.0)
    account = lab.imap_account(proxy, user, track_reports=False)
    ids: list[int] = []
    # In waves, one kill each: the wave's first APPEND answer is held and its worker killed.
    for k in range(kills):
        proxy.hold("append")
        thread, wave = _queue_in_background(lab, account, n // kills)
        try:
            port = proxy.held.get(timeout=30)
        except queue.Empty:
            port = None
        victim = None if port is None else lab.worker_on_port(port)
        if victim is None:
            proxy.disarm()
            proxy.release()
            row.notes.append(f"kill {k + 1}: " + ("no APPEND came to hold" if port is None
                                                  else "no worker owned the held connection"))
        else:
            lab.take_worker(victim)
            victim.kill()
            row.notes.append(f"kill {k + 1} at APPEND #{proxy.seen['append']}")
            lab.start_workers(1, concurrency=3)
        thread.join()
        ids += wave
    lab.settle(ids)
    if not wait_for(lambda: _copies_final(ids), lab.plan.settle, 0.5):
        row.notes.append("some copies were still waiting at the end")
    copies = _sent_copies(lab, user)

    def judge_copy(message, verdict: Row) -> None:
        held = copies[message.message_id.strip()]
        copy = SentCopy.objects.filter(message=message).first()
        due = any(r.status == Recipient.Status.ACCEPTED for r in message.recipients.all())
        if held >= 2:
            verdict.once, verdict.lost, verdict.twice = 0, 0, 1
        elif (held == 0 and due and not verdict.twice
              and not (copy and copy.status == SentCopy.Status.FAILED and copy.detail)):
            verdict.once, verdict.lost = 0, 1

    lab.judge(row, ids, also=judge_copy)
    states = collections.Counter(
        SentCopy.objects.filter(message_id__in=ids).values_list("status", flat=True))
    found = SentCopy.objects.filter(message_id__in=ids, detail__contains="already there")
    row.notes.append("copies " + " ".join(f"{k}={v}" for k, v in sorted(states.items()))
                     + f", {found.count()} found already there by the SEARCH, "
                     f"{sum(copies.values())} in Sent")
    return row


def _postfix_report(message, address: str, sender: str) -> bytes:
    """A delivery-status report (RFC 3464) saying ``address`` bounced, shaped as Postfix's
    bounce daemon writes one, built with the email package: the human-readable part,
    ``message/delivery-status`` (Reporting-MTA, X-Postfix-Queue-ID, Original-Envelope-Id =
    the message's envid, Arrival-Date; then Final-Recipient, Original-Recipient, Action:
    failed, Status: 5.1.1, Remote-MTA, Diagnostic-Code) and the returned headers
    (``text/rfc822-headers``, as with RET=HDRS: the frozen message's own header block)."""
    from email.message import Message
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.policy import SMTP
    from email.utils import format_datetime, make_msgid

    from django.utils import timezone

    host = "mx.faults.test"
    reply = (f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual "
             "mailbox table")
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"MAILER-DAEMON@{host} (Mail Delivery System)"
    report["To"] = sender
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = format_datetime(timezone.now())
    report["Message-ID"] = make_msgid(domain=host)
    report["Auto-Submitted"] = "auto-replied"
    report.attach(MIMEText(
        f"This is the mail system at host {host}.\n\nI'm sorry to have to inform you that "
        "your message could not\nbe delivered to one or more recipients.\n\n"
        f"<{address}>: host mail.example.com[127.0.0.1] said: {reply} (in reply to RCPT TO "
        "command)\n", "plain", "us-ascii"))
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = f"dns; {host}"
    per_message["X-Postfix-Queue-ID"] = hashlib.sha256(address.encode()).hexdigest()[:10]
    per_message["X-Postfix-Sender"] = f"rfc822; {sender}"
    per_message["Original-Envelope-Id"] = message.envid
    per_message["Arrival-Date"] = format_datetime(timezone.now())
    per_recipient["Final-Recipient"] = f"rfc822; {address}"
    per_recipient["Original-Recipient"] = f"rfc822;{address}"
    per_recipient["Action"] = "failed"
    per_recipient["Status"] = "5.1.1"
    per_recipient["Remote-MTA"] = "dns; mail.example.com"
    per_recipient["Diagnostic-Code"] = f"smtp; {reply}"
    status = Message()
    status["Content-Type"] = "message/delivery-status"
    status.set_payload([per_message, per_recipient])
    report.attach(status)
    with message.eml.open("rb") as fh:
        returned = fh.read().split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    report.attach(MIMEText(returned.replace("\r\n", "\n") + "\n", "rfc822-headers", "utf-8"))
    return report.as_bytes(policy=SMTP)


def bounce_polling(lab: Lab) -> Row:
    """Bounce tracking under faults: messages with two recipients each are delivered, then
    real-shaped delivery-status reports (``_postfix_report``) for the first recipient of
    three messages in four are put into the INBOX (straight into Dovecot, in three waves)
    while beat has the workers poll every second through the proxy. Faults: the proxy cuts
    the connection in the middle of the poll's FETCH of the reports (first wave); a worker
    is SIGKILLed mid-poll, just after it recorded a first round of reports and asked for
    the next (second wave: more reports than one round of FETCH, so some are recorded and
    the cursor is not yet moved); the poll lease (10 x ``MAILROOM_IMAP_TIMEOUT`` = 30 s)
    runs out and another worker reads those again.

    Counted per message, at the SMTP sink as usual and then past the first hop:
    once = delivered once, and its report (if it got one) recorded exactly once
    (one ``DeliveryReport``) with exactly the reported recipient ``bounced`` and the
    message ``bounced``, while a message without a report kept ``sent`` with no remote
    state; twice = delivered twice, or a report recorded more than once, or a recipient
    marked that no report named, or an unreported message changed (an effect without its
    cause, counted with duplicates); lost = not delivered (as usual), or a report that
    never got recorded, or a reported recipient not marked ``bounced``. No duplicate is
    allowed (bound 0)."""
    from imapclient import IMAPClient

    from mailer.models import DeliveryReport, OutboxMessage

    row = Row("bounce-polling")
    n = 40 if lab.plan.quick else 120
    user = "imap2"
    proxy = lab.imap_proxy(hold=5.0)
    account = lab.imap_account(proxy, user, save_to_sent=False)
    ids = lab.queue(account, n, recipients=2)
    lab.settle(ids)
    reported: dict[int, str] = {}
    raws = []
    for m in OutboxMessage.objects.filter(pk__in=ids).order_by("pk"):
        if m.pk % 4 and m.status == "sent":
            reported[m.pk] = min(r.address for r in m.recipients.all())
            raws.append(_postfix_report(m, reported[m.pk], account.from_address))
    first, second = max(2, len(raws) // 6), 22 if lab.plan.quick else 60  # > one FETCH round
    waves = [raws[:first], raws[first:first + second], raws[first + second:]]

    def deliver_reports(wave: list[bytes]) -> None:  # one MULTIAPPEND: all at once
        if not wave:
            return
        client: IMAPClient = lab.dovecot().client(user)
        with client:
            client.multiappend("INBOX", wave)

    proxy.cut("body")
    deliver_reports(waves[0])
    if wait_for(lambda: proxy.cuts >= 1, 30):
        row.notes.append("connection cut mid-FETCH")
    else:
        proxy.disarm()
        row.notes.append("no FETCH came to cut")
    # The first wave read whole before the second comes, so that one poll meets the second
    # wave alone: its first round of FETCH passes and is recorded, the second is held.
    wait_for(lambda: DeliveryReport.objects.filter(message_id__in=ids).count() >= first, 30)
    proxy.hold("body-request", skip=1)
    deliver_reports(waves[1])
    try:
        port: int | None = proxy.held.get(timeout=30)
    except queue.Empty:
        port = None
    victim = None if port is None else lab.worker_on_port(port)
    if victim is None:
        proxy.disarm()
        row.notes.append("no poll came to kill" if port is None
                         else "no worker owned the polling connection")
    else:
        recorded = DeliveryReport.objects.filter(message_id__in=ids).count()
        lab.take_worker(victim)
        victim.kill()
        row.notes.append(f"worker killed mid-poll with {recorded} reports recorded")
        lab.start_workers(1, concurrency=3)
    proxy.release()
    deliver_reports(waves[2])

    def all_recorded() -> bool:
        return DeliveryReport.objects.filter(message_id__in=ids).count() >= len(raws)

    wait_for(all_recorded, lab.plan.settle, 0.5)
    time.sleep(3)  # a few more polls, in which nothing may be recorded again
    counts = collections.Counter(
        DeliveryReport.objects.filter(message_id__in=ids).values_list("message_id", flat=True))

    def judge_reports(message, verdict: Row) -> None:
        want = reported.get(message.pk)
        marked = {r.address: r.remote for r in message.recipients.all() if r.remote}
        if counts[message.pk] > 1 or set(marked) - {want} or (
                want is None and message.status != "sent"):
            verdict.once, verdict.lost, verdict.twice = 0, 0, 1
        elif want is not None and not verdict.twice and (
                counts[message.pk] == 0 or marked.get(want) != "bounced"
                or message.status != "bounced"):
            verdict.once, verdict.lost = 0, 1

    lab.judge(row, ids, also=judge_reports)
    imap = account.imap
    imap.refresh_from_db()
    row.notes.append(f"{len(raws)} reports in {len(waves)} waves, {sum(counts.values())} "
                     f"recorded; last poll: {imap.poll_detail or 'no problem'}")
    return row


# behaviour -> (security, how many messages carry a big attachment)
HOSTILE = {
    "refuse": ("none", 0),
    "greeting-421": ("none", 0),
    "drop-in-data": ("none", None),  # None: a third of them, the rest are small
    "silent": ("none", 0),
    "silent-after-data": ("none", 0),
    "tls-fail": ("starttls", 0),
    "garbage": ("none", 0),
    "endless": ("none", 0),
}


def hostile_servers(lab: Lab, only: set[str] | None) -> list[Row]:
    """Every hostile server at once, each on its own account. A server heals (relays to a
    good sink) once each of its messages has met it at least once, so that "lost" can be
    judged. Plus a server that takes 2 recipients per transaction (452 4.5.3) and one that
    goes away after every message on a connection."""
    from mailer.models import OutboxMessage

    plain = lab.sink()
    tls = lab.sink(certificates=lab.certificates)
    n = lab.plan.hostile
    # "silent" holds a worker slot for the client's whole timeout (10 s here): enough slots
    # that the other servers are still met while it does, and a lease longer than that
    # timeout (as in production: 300 s vs 60 s) so that the timeout, not an expired lease,
    # ends the attempt.
    lab.stop_workers()
    lab.start_workers(2, concurrency=n + 2, lease=25)
    jobs = []  # (row, ids, hostile server or None)
    for behaviour, (security, big) in HOSTILE.items():
        name = f"hostile-{behaviour}"
        if only and name not in only:
            continue
        server = lab.hostile(behaviour, tls if security != "none" else plain)
        account = lab.account(server.port, security=security)
        big = max(1, n // 3) if big is None else big
        jobs.append((Row(name), lab.queue(account, n, big=big), server))
    for name, options, recipients in (
        ("hostile-452-recipients", {"recipient_limit": 2}, 5),
        ("hostile-goes-away", {"go_away": True}, 1),
    ):
        if only and name not in only:
            continue
        server = lab.sink(**options)
        jobs.append((Row(name), lab.queue(lab.account(server.port), n, recipients=recipients),
                     None))

    def met(ids: list[int]) -> bool:
        return not OutboxMessage.objects.filter(pk__in=ids, attempts=0).exists()

    unhealed = {id(server): (server, ids) for _row, ids, server in jobs if server is not None}
    deadline = time.monotonic() + (45 if lab.plan.quick else 90)
    while unhealed and time.monotonic() < deadline:
        for key, (server, ids) in list(unhealed.items()):
            if met(ids):
                server.heal()
                del unhealed[key]
        time.sleep(0.3)
    for row, _ids, server in jobs:
        if server is None:
            continue
        if not server.healed:
            row.notes.append("not every message met the server before it healed")
            server.heal()
    lab.settle([i for _row, ids, _s in jobs for i in ids])
    lab.stop_workers()
    lab.start_workers(2, concurrency=3)
    return [lab.judge(row, ids) for row, ids, _server in jobs]


def race(lab: Lab, workers: int) -> Row:
    """``workers`` workers started together over the same due messages, every message woken
    three times (its own wake-up, two extra ones, and the sweeper's)."""
    from mailer import tasks

    row = Row(f"race-{workers}-workers")
    # No beat while no worker runs: its sweeps would pile up in the queue and, all run at
    # once when the workers start, flood it with wake-ups (see the report on sweep expiry).
    lab.stop_beat()
    lab.stop_workers()
    account = _good_account(lab)
    ids = lab.queue(account, lab.plan.race)
    for _ in range(2):
        for pk in ids:
            tasks.deliver.delay(pk)
    row.notes.append(f"{len(ids) * 3} wake-ups")
    lab.start_workers(workers, concurrency=2)
    lab.start_beat()
    return lab.conclude(row, ids)


INFRA = {
    "worker-sigkill": worker_sigkill,
    "worker-sigkill-retry-unk": worker_sigkill_retry_unknown,
    "redis-outage": redis_outage,
    "broker-down-at-send": broker_down_at_send,
    "pg-terminate": pg_terminate,
    "pg-crash": pg_crash,
    "sent-copy-sigkill": sent_copy_sigkill,
    "bounce-polling": bounce_polling,
}


def run(plan: Plan, only: set[str] | None, keep: bool) -> list[Row]:
    rows: list[Row] = []
    with Lab(plan, keep) as lab:
        lab.start_workers(2, concurrency=3)

        def timed(fn: Callable[[], Row | list[Row]]) -> None:
            started = time.monotonic()
            lab.restarts.clear()
            result = fn()
            for row in result if isinstance(result, list) else [result]:
                row.seconds = time.monotonic() - started
                if lab.restarts:
                    row.notes.append(f"{len(lab.restarts)} worker(s) died and were restarted: "
                                     + "; ".join(sorted(set(lab.restarts))))
                rows.append(row)
                log(f"{row.scenario}: {row.states} once={row.once} twice={row.twice} "
                    f"lost={row.lost} {'; '.join(row.notes)}")
                if not row.ok:
                    lab.keep = True  # the logs are the evidence
                    lab.log_worker_errors()

        for name, fn in INFRA.items():
            # The retry-unknown variant costs two worker restarts: full runs only, or asked.
            if (not only and not (plan.quick and name == "worker-sigkill-retry-unk")) or (
                    only and name in only):
                log(f"scenario {name}")
                timed(lambda fn=fn: fn(lab))
        if not only or any(n.startswith("hostile-") for n in only):
            log("scenarios hostile-*")
            timed(lambda: hostile_servers(lab, only))
        for n in (2, 4):
            name = f"race-{n}-workers"
            if not only or name in only:
                log(f"scenario {name}")
                timed(lambda n=n: race(lab, n))
    return rows


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'scenario':<26} {'queued':>6} {'once':>6} {'twice':>6} {'bound':>6} {'lost':>5}"
        "  final states"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        states = " ".join(f"{k}={v}" for k, v in sorted(r.states.items()))
        flag = "" if r.ok else "   <-- FAIL"
        print(f"{r.scenario:<26} {r.queued:>6} {r.once:>6} {r.twice:>6} {r.bound:>6} {r.lost:>5}  "
              f"{states}{flag}")
        if r.notes:
            print(f"{'':<26} ({'; '.join(r.notes)}; {r.seconds:.0f} s)")
    print(f"BOUND duplicated<={sum(r.bound for r in rows)}")
    print(
        f"TOTAL scenarios={len(rows)} queued={sum(r.queued for r in rows)} "
        f"delivered_once={sum(r.once for r in rows)} duplicated={sum(r.twice for r in rows)} "
        f"lost={sum(r.lost for r in rows)}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter outages, fewer messages")
    parser.add_argument("--only", action="append", metavar="SCENARIO",
                        help="run only this scenario (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = run(Plan.make(args.quick), set(args.only or ()), args.keep)
    log(f"done in {time.monotonic() - started:.0f} s")
    print_table(rows)
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
