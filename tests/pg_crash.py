"""A PostgreSQL crash right after an end-of-data mark, for the crash test
(``tests/mailer/test_it_keeps_the_mark_through_a_database_crash.py``) and the ``pg-crash``
scenario of ``bench/faults.py``.

It runs a throwaway PostgreSQL cluster of its own (``initdb`` into a temporary directory, a
free loopback port, ``pg_ctl``; as the ``postgres`` OS user when run as root, since initdb
refuses root) — the shared server on 5432 is never touched. Mailroom runs in child
processes pointed at that cluster (Django binds its database at start-up, so this process
cannot switch to it): ``setup`` queues the messages through the real send service,
``deliver`` runs the Celery task's body (``delivery.drain``) over all of them, ``recover``
runs the sweeper and delivers what it gives back. An aiosmtpd server in this process takes
the data of the ``crash_at``-th message and, before it answers, crashes PostgreSQL
(``pg_ctl stop -m immediate``: no shutdown checkpoint, WAL not yet written is lost) and
SIGKILLs the delivering worker — the machine losing power in the real window: mark
committed, data sent, the server's reply not yet recorded. Then PostgreSQL is started again
(crash recovery), the leases run out and ``recover`` runs.

``python -m tests.pg_crash PHASE`` is the child side (not a command for anyone else).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pg_bin() -> Path:
    """Where initdb and pg_ctl are: Debian's newest ``/usr/lib/postgresql/<version>/bin``
    (they are not on PATH there; CI and the dev machine both have 15)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
LOOPBACK = "127.0.0.1"
LEASE_SECONDS = 2  # the child workers' lease: the sweeper may reclaim soon after recovery


# --- a PostgreSQL cluster of our own ---------------------------------------------------------


def _as_postgres() -> list[str]:
    """The command prefix that runs a PostgreSQL tool: initdb and postgres refuse root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def available() -> str | None:
    """None when a private cluster can be run here, else what is missing."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL's {tool} (in {PG_BIN})"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "a 'postgres' OS user to run initdb as (it refuses root)"
        if shutil.which("runuser") is None:
            return "runuser (util-linux), to run initdb as the postgres user"
    return None


class PrivatePostgres:
    """A throwaway cluster on a free loopback port, trust auth, superuser ``postgres``;
    ``settings`` are server settings (``synchronous_commit="off"``).

    ``wal_writer_delay`` is raised to its maximum (10 s): an asynchronous commit's WAL then
    stays in PostgreSQL's memory until a later synchronous commit flushes it, so a crash
    loses it for certain — a weakened commit cannot hide behind a lucky WAL writer. Every
    synchronous commit is unaffected (it flushes its own WAL)."""

    def __init__(self, **settings: str) -> None:
        from tests.ports import free_port

        self.settings = {"wal_writer_delay": "10000ms", **settings}
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mailroom-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/postgres"

    def _tool(self, name: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run([*_as_postgres(), str(PG_BIN / name), *args], capture_output=True,
                              text=True, timeout=timeout, cwd=self.dir)
        if done.returncode:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{name} {' '.join(args)} failed: {done.stderr[-2000:]}\n{log}")

    def init(self) -> PrivatePostgres:
        # --no-sync: only the initial files skip fsync (nothing here survives the machine);
        # the server itself runs with fsync and synchronous_commit at their defaults (on).
        self._tool("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={LOOPBACK} -c unix_socket_directories={self.dir}"
        )
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._tool("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120",
                   "-o", options, "start")

    def crash(self) -> None:
        """Stop like a crash: no checkpoint, no flush; the next start runs crash recovery."""
        self._tool("pg_ctl", "-D", str(self.data), "-w", "stop", "-m", "immediate")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._tool("pg_ctl", "-D", str(self.data), "-w", "stop", "-m", "fast")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the scenario ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Per message (in queue order): its final row, and how often the server got it."""

    messages: list[dict] = field(default_factory=list)  # from ``recover``
    received: collections.Counter = field(default_factory=collections.Counter)  # Message-ID -> n
    crashed: str = ""  # the Message-ID whose data the server held when PostgreSQL crashed

    def times_received(self, message: dict) -> int:
        return self.received[message["message_id"]]


def _child_env(pg: PrivatePostgres, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MAILROOM_", "CELERY_", "DATABASE_", "DJANGO_", "REDIS_"))}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", MAILROOM_ENV="development",
               MAILROOM_DATA_DIR=str(data_dir), DATABASE_URL=pg.url,
               MAILROOM_LEASE_SECONDS=str(LEASE_SECONDS), PYTHONPATH=str(ROOT),
               PYTHONUNBUFFERED="1")
    return env


def _child(env: dict, *args: str, timeout: float = 180) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.pg_crash", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"pg_crash {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(*, messages: int = 1, crash_at: int = 1, async_mark: bool = False,
        server_settings: dict[str, str] | None = None) -> Outcome:
    """Queue ``messages``, deliver them in one drain, crash PostgreSQL (and the worker) when
    the server holds the data of the ``crash_at``-th, restart, recover; report.

    ``async_mark``: the delivering worker commits its end-of-data marks with
    ``synchronous_commit = off``, as before issue 12 — for showing what a weakened mark
    does in the same window (the test's negative; never for the product).
    ``server_settings``: for the private cluster (``PrivatePostgres``)."""
    from tests.smtp_servers import RecordingHandler, start_smtp_server

    outcome = Outcome()
    pg = PrivatePostgres(**(server_settings or {})).init()
    data_dir = Path(tempfile.mkdtemp(prefix="mailroom-pg-crash-"))
    worker: list[subprocess.Popen] = []
    struck = threading.Event()

    class CrashingHandler(RecordingHandler):
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            reply = await super().handle_DATA(server, session, envelope)
            if len(self.messages) == crash_at and not struck.is_set():
                struck.set()
                outcome.crashed = _message_id(self.messages[-1].content)
                # Blocking on purpose: nothing may answer the client before the crash.
                pg.crash()
                if worker:
                    worker[0].send_signal(signal.SIGKILL)
            return reply

    handler = CrashingHandler()
    sink = start_smtp_server(handler=handler)
    try:
        pg.start()
        env = _child_env(pg, data_dir)
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "-v0", "--noinput"],
                                 cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        if migrate.returncode:
            raise RuntimeError(f"migrate failed:\n{migrate.stderr[-3000:]}")
        queued = _child(env, "setup", "--port", str(sink.port), "--messages", str(messages))
        argv = [sys.executable, "-m", "tests.pg_crash", "deliver", "--message",
                str(queued["ids"][0])] + (["--async-mark"] if async_mark else [])
        worker.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True))
        _, stderr = worker[0].communicate(timeout=180)
        if not struck.is_set():
            raise RuntimeError(f"the server never got message {crash_at}:\n{stderr[-4000:]}")
        pg.start()  # crash recovery replays what reached the WAL on disk
        time.sleep(LEASE_SECONDS + 0.5)  # the dead worker's leases run out
        outcome.messages = _child(env, "recover", "--ids", ",".join(map(str, queued["ids"])))[
            "messages"
        ]
        outcome.received = collections.Counter(_message_id(m.content) for m in handler.messages)
    finally:
        if worker and worker[0].poll() is None:
            worker[0].kill()
        sink.stop()
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return outcome


def _message_id(raw: bytes) -> str:
    from email.parser import BytesHeaderParser

    return str(BytesHeaderParser().parsebytes(raw).get("Message-ID", "")).strip()


# --- the child processes -------------------------------------------------------------------------


def _setup(args) -> dict:
    from django.contrib.auth import get_user_model

    from mailer import services
    from mailer.models import Draft, SmtpAccount

    owner = get_user_model().objects.create_user("crash", "crash@example.com", None)
    account = SmtpAccount.objects.create(
        owner=owner, label="crash", from_address="crash@example.com", host=LOOPBACK,
        port=args.port, security=SmtpAccount.Security.NONE,
        auth_mechanism=SmtpAccount.AuthMechanism.NONE,
    )
    ids = []
    for i in range(args.messages):
        draft = Draft.objects.create(owner=owner, account=account, to=f"rcpt{i}@example.org",
                                     subject=f"crash #{i}", body_text=f"Message {i}.\n")
        ids.append(services.send_draft(owner, draft, hold_seconds=0).pk)
    return {"ids": ids}


def _deliver(args) -> dict:
    from django.db import connection, transaction

    from mailer import delivery

    if args.async_mark:
        # The end-of-data mark as it was before issue 12: its transaction committed with
        # synchronous_commit = off (the real mark runs inside, as a savepoint), and nothing
        # insisted on the flush.
        from mailer.delivery import attempt, rows

        durable_mark, write = attempt.mark_end_of_data, rows.write

        def async_mark(*a, **kw):
            with transaction.atomic():
                with connection.cursor() as cur:
                    cur.execute("SET LOCAL synchronous_commit = off")
                durable_mark(*a, **kw)

        attempt.mark_end_of_data = async_mark
        rows.write = lambda *updates, durable=False: write(*updates)
    return {"outcomes": delivery.drain(args.message)}


def _recover(args) -> dict:
    from mailer import delivery
    from mailer.models import OutboxMessage

    ids = [int(i) for i in args.ids.split(",")]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        woken: list[int] = []
        delivery.sweep(enqueue=woken.append)
        for pk in woken:
            delivery.drain(pk)
        if not OutboxMessage.objects.filter(pk__in=ids, status__in=["queued", "sending"]).exists():
            break
        time.sleep(0.5)
    rows = []
    for m in (
        OutboxMessage.objects.filter(pk__in=ids)
        .order_by("pk")
        .prefetch_related("delivery_attempts")
    ):
        rows.append({
            "id": m.pk, "message_id": m.message_id.strip(), "status": m.status,
            "last_error": m.last_error,
            "attempts": [{"outcome": a.outcome, "marked": a.end_of_data_at is not None}
                         for a in m.delivery_attempts.order_by("started_at")],
        })
    return {"messages": rows}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.pg_crash")
    sub = parser.add_subparsers(dest="phase", required=True)
    setup = sub.add_parser("setup")
    setup.add_argument("--port", type=int, required=True)
    setup.add_argument("--messages", type=int, default=1)
    deliver = sub.add_parser("deliver")
    deliver.add_argument("--message", type=int, required=True)
    deliver.add_argument("--async-mark", action="store_true")
    recover = sub.add_parser("recover")
    recover.add_argument("--ids", required=True)
    args = parser.parse_args()
    import django

    django.setup()
    phase = {"setup": _setup, "deliver": _deliver, "recover": _recover}[args.phase]
    print(json.dumps(phase(args)), flush=True)


if __name__ == "__main__":
    main()
