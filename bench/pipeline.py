"""Benchmark: the whole outbox pipeline against two baselines, in one run.

    .venv/bin/python bench/pipeline.py [--quick] [--backends redis-postgresql,embedded]

N messages (2,000; 200 with --quick) to one recipient each go through ``mailer``'s send
service on one account and are delivered by 2 Celery worker processes to a local sink —
Postfix's ``smtp-sink`` and an aiosmtpd sink, each in its own process behind a small counting
TCP proxy (``bench/_sinks.DelayProxy`` with no delay), which counts the SMTP connections opened.
Backends: Redis + PostgreSQL, and the embedded default (SQLite + the ``filesystem://``
broker). Messages: about 2 KB, and a 100 KB attachment each.

- **ours**: the drafts exist before the clock; the clock starts at the first
  ``services.send_draft`` call (so queueing counts) and stops when every message is recorded
  (final state in the database).
- **smtplib**: the bare loop: the same kind of message, prebuilt, over one ``smtplib``
  connection (the ceiling for a sequential sender).
- **naive**: the naive Django way: one Celery task per mail (on the same broker, 2 worker
  processes) sending it with Django's ``EmailMessage.send`` over a new connection each time.

Printed per case: messages per second, connections opened, peak RSS per worker process
(VmHWM, the kernel's exact high-water mark) and
the ratios. With ``--delay-ms`` (10 by default) the 2 KB case into smtp-sink also runs
through ``bench/_proxy.py`` delaying each direction, so that round trips and new
connections cost what they cost on a real network (on loopback they cost nothing, and the
naive baseline is already ~0.45x the bare loop there). Then the targets of issue 3 (on
Redis + PostgreSQL into smtp-sink: >= 0.5x the bare loop for 2 KB, >= 0.7x with
attachments, >= 4x naive, <= 20 connections, < 150 MB per worker) and the growth of a
worker delivering one 25 MB attachment (< 50 MB).

``--without`` runs "ours" without one or more of the speed-ups made for this benchmark,
to measure what each buys (compare runs made alternately): ``wake-flags`` (every send
rings a worker, as without Redis), ``header-cache`` (the stdlib's header registry, no
memoised headers or addresses), ``status-counters`` (the StatusCount triggers dropped for
the run). The patches live here only; Mailroom itself has one path for each.

Only loopback is used. Not part of the test suite (tests/bench smoke-runs --quick).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import random
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import _sinks  # noqa: E402
import smtp_client  # noqa: E402

LOOPBACK = "127.0.0.1"
MB = 1024 * 1024
SENDER = "bench@example.com"
RECIPIENT = "rcpt@example.net"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/12"  # a database of its own, flushed before each case
WORKERS = 2

SIZES = {"2 KB": (1800, 0), "100 KB attachment": (1000, 100_000)}
TARGETS = {"2 KB": 0.5, "100 KB attachment": 0.7}
TARGET_NAIVE = 4.0
TARGET_CONNECTIONS = 20
TARGET_RSS_MB = 150.0
TARGET_GROWTH_MB = 50.0


# --- content -------------------------------------------------------------------------------


def body_text(size: int) -> str:
    return smtp_client.text_body(random.Random(size), size)


def attachment_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)


# --- processes -----------------------------------------------------------------------------


def memory_mb(pid: int, key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (the peak RSS over the process's life, exact: no
    sampling can miss a short peak) from /proc, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} for process {pid}")


def start_workers(
    count: int, env: dict, logdir: Path, include: str | None = None
) -> list[subprocess.Popen]:
    """``count`` Celery workers, one process each (solo pool), started and ready."""
    workers, logs = [], []
    for n in range(count):
        log = logdir / f"worker-{n}-{uuid.uuid4().hex[:6]}.log"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--hostname",
            f"bench{n}-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if include:
            argv += ["--include", include]
        with open(log, "w") as out:
            worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        worker.log_path = log  # type: ignore[attr-defined]
        workers.append(worker)
        logs.append(log)
    deadline = time.monotonic() + 60
    for worker, log in zip(workers, logs, strict=True):
        while " ready." not in log.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                stop_workers(workers)
                raise RuntimeError(f"a worker did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.terminate()  # warm shutdown: the worker closes its SMTP connections
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def wait_until(what: str, done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# --- the driver: one case in a fresh process with the backend's settings ---------------------


SPEEDUPS = ("wake-flags", "header-cache", "status-counters")


def _without(names: list[str]) -> None:
    """Switch off speed-ups for this driver's run (see the module docstring)."""
    from email.headerregistry import HeaderRegistry

    from django.db import connection

    from mailer import counts, headers, mime, wakeups

    if "wake-flags" in names:
        wakeups.raise_flag = lambda account_id: True  # ring always; nobody gathers
    if "header-cache" in names:
        headers.POLICY_SMTP = headers.POLICY_SMTP.clone(header_factory=HeaderRegistry())
        headers.POLICY_SMTPUTF8 = headers.POLICY_SMTPUTF8.clone(header_factory=HeaderRegistry())
        headers.address_header = headers.address_header.__wrapped__
        mime.validate_address = mime.validate_address.__wrapped__
    if "status-counters" in names:
        counts.uninstall(connection)


def driver(spec: dict) -> dict:
    import django

    django.setup()
    _without(spec.get("without", []))
    from django.contrib.auth import get_user_model

    import config.celery  # noqa: F401  (the Celery app the producer publishes with)
    from mailer import services
    from mailer.models import Attachment, DeliveryAttempt, Draft, OutboxMessage, SmtpAccount

    env, logdir = dict(os.environ), Path(spec["logdir"])
    user, _ = get_user_model().objects.get_or_create(username="bench")
    account = SmtpAccount.objects.create(
        owner=user,
        label=f"bench-{uuid.uuid4().hex[:8]}",
        from_address=SENDER,
        host=LOOPBACK,
        port=spec["port"],
        security="none",
        auth_mechanism="none",
    )
    body = body_text(spec["body"])
    attachment = attachment_bytes(spec["attachment"]) if spec["attachment"] else b""
    count = spec["count"]

    def make_draft(i: int, data: bytes = attachment) -> Draft:
        from django.core.files.base import ContentFile

        draft = Draft.objects.create(
            owner=user, account=account, to=RECIPIENT, subject=f"Bench {i}", body_text=body
        )
        if data:
            att = Attachment(
                draft=draft,
                filename="data.bin",
                size=len(data),
                content_type="application/octet-stream",
            )
            att.file.save(uuid.uuid4().hex, ContentFile(data), save=False)
            att.save()
        return draft

    mine = OutboxMessage.objects.filter(account=account)
    final = OutboxMessage.FINAL_STATUSES

    if spec["mode"] == "memory":
        [worker] = start_workers(1, env, logdir)
        try:
            services.send_draft(user, make_draft(0, b""), hold_seconds=0)  # warm up
            wait_until(
                "the warm-up message", lambda: mine.filter(status__in=final).count() == 1, 60
            )
            time.sleep(0.5)
            before = memory_mb(worker.pid, "VmRSS")
            big = make_draft(1, attachment_bytes(spec["big"]))
            services.send_draft(user, big, hold_seconds=0)
            wait_until("the 25 MB message", lambda: mine.filter(status__in=final).count() == 2, 300)
            peak = memory_mb(worker.pid, "VmHWM")
        finally:
            stop_workers([worker])
        return {
            "before_mb": before,
            "peak_mb": peak,
            "growth_mb": peak - before,
            "message_mb": mine.order_by("-size").first().size / MB,
            "statuses": sorted(mine.values_list("status", flat=True)),
        }

    if spec["mode"] == "naive":
        from bench._naive_tasks import naive_send

        done = logdir / f"naive-{uuid.uuid4().hex}"
        done.touch()
        workers = start_workers(WORKERS, env, logdir, include="bench._naive_tasks")
        payload = base64.b64encode(attachment).decode() if attachment else ""
        try:
            t0 = time.perf_counter()
            for i in range(count):
                naive_send.delay(
                    f"Bench {i}",
                    body,
                    SENDER,
                    [RECIPIENT],
                    payload,
                    LOOPBACK,
                    spec["port"],
                    str(done),
                )
            queued = time.perf_counter() - t0
            wait_until("the naive tasks", lambda: done.stat().st_size >= count, spec["timeout"])
            elapsed = time.perf_counter() - t0
            peak = max(memory_mb(w.pid, "VmHWM") for w in workers)
        finally:
            stop_workers(workers)
        return {
            "elapsed": elapsed,
            "queued": queued,
            "sent": done.stat().st_size,
            "peak_rss_mb": peak,
        }

    # ours
    drafts = [make_draft(i) for i in range(count)]
    workers = start_workers(WORKERS, env, logdir)
    try:
        t0 = time.perf_counter()
        for draft in drafts:
            services.send_draft(user, draft, hold_seconds=0)
        queued = time.perf_counter() - t0
        wait_until(
            "every message to be recorded",
            lambda: mine.filter(status__in=final).count() == count,
            spec["timeout"],
        )
        elapsed = time.perf_counter() - t0
        peak = max(memory_mb(w.pid, "VmHWM") for w in workers)
    finally:
        stop_workers(workers)
    statuses: dict[str, int] = {}
    for status in mine.values_list("status", flat=True):
        statuses[status] = statuses.get(status, 0) + 1
    opened = DeliveryAttempt.objects.filter(
        message__account=account, connection_reused=False
    ).count()
    # Each attempt logs "delivery entry=… seconds=S" (claim to record, SMTP included).
    seconds = [
        float(line.rsplit("seconds=", 1)[1])
        for w in workers
        for line in w.log_path.read_text().splitlines()
        if "delivery entry=" in line
    ]
    return {
        "elapsed": elapsed,
        "queued": queued,
        "statuses": statuses,
        "peak_rss_mb": peak,
        "connections_by_attempts": opened,
        "attempt_ms": 1000 * sum(seconds) / max(1, len(seconds)),
    }


def run_driver(env: dict, spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--driver", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(
        f"the {spec['mode']} driver failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )


# --- backends -------------------------------------------------------------------------------


@contextlib.contextmanager
def backend(name: str, workdir: Path) -> Iterator[dict]:
    """The environment for one backend, with a migrated, empty database."""
    data_dir = workdir / name
    data_dir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "MAILROOM_", "DJANGO_")
        )
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        MAILROOM_DATA_DIR=str(data_dir),
        MAILROOM_ENV="development",
        DEBUG="false",
        PYTHONUNBUFFERED="1",
    )
    dbname = None
    if name == "redis-postgresql":
        import psycopg

        dbname = f"mailroom_bench_{os.getpid()}"
        with psycopg.connect(
            PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
            conn.execute(f'CREATE DATABASE "{dbname}"')
        env.update(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{dbname}",
            CELERY_BROKER_URL=REDIS_URL,
            MAILROOM_REDIS_URL=REDIS_URL,
        )
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if migrate.returncode:
        raise RuntimeError(f"migrate failed for {name}:\n{migrate.stderr[-3000:]}")
    try:
        yield env
    finally:
        if dbname:
            import psycopg

            with psycopg.connect(
                PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def reset_broker(env: dict) -> None:
    """No wake-up of an earlier case may reach this one."""
    if env.get("CELERY_BROKER_URL", "").startswith("redis://"):
        import redis

        redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    else:
        broker = Path(env["MAILROOM_DATA_DIR"]) / "broker" / "out"
        if broker.is_dir():
            for f in broker.iterdir():
                f.unlink()


# --- the bare loop --------------------------------------------------------------------------


def bare_smtplib(port: int, count: int, body_size: int, attachment_size: int) -> float:
    messages = [
        smtp_client.build_message(i, [RECIPIENT], body_size, attachment_size) for i in range(count)
    ]
    t0 = time.perf_counter()
    with smtplib.SMTP(LOOPBACK, port, local_hostname="bench.localhost") as client:
        for raw in messages:
            client.sendmail(SENDER, [RECIPIENT], raw)
    return count / (time.perf_counter() - t0)


# --- report ---------------------------------------------------------------------------------


@dataclass
class Case:
    backend: str
    sink: str
    size: str
    count: int
    smtplib: float = 0.0
    ours: float = 0.0
    ours_queue_rate: float = 0.0
    ours_connections: int = 0
    ours_connections_db: int = 0
    ours_rss_mb: float = 0.0
    ours_statuses: dict = field(default_factory=dict)
    ours_attempt_ms: float = 0.0
    naive: float = 0.0
    naive_connections: int = 0
    naive_rss_mb: float = 0.0

    @property
    def vs_smtplib(self) -> float:
        return self.ours / self.smtplib if self.smtplib else 0.0

    @property
    def vs_naive(self) -> float:
        return self.ours / self.naive if self.naive else 0.0


def print_case(c: Case) -> None:
    print(
        f"  {c.backend:<17} {c.sink:<14} {c.size:<18} "
        f"ours {c.ours:7.1f} msg/s ({c.ours_connections} conn, {c.ours_rss_mb:5.1f} MB)  "
        f"naive {c.naive:6.1f} msg/s ({c.naive_connections} conn, {c.naive_rss_mb:5.1f} MB)  "
        f"smtplib {c.smtplib:7.1f} msg/s  "
        f"ours/smtplib {c.vs_smtplib:4.2f}×  ours/naive {c.vs_naive:4.2f}×",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 messages per case")
    parser.add_argument(
        "--count", type=int, help="messages per case (default 2000, 200 with --quick)"
    )
    parser.add_argument("--backends", default="redis-postgresql,embedded")
    parser.add_argument("--sinks", default="smtp-sink,aiosmtpd")
    parser.add_argument("--sizes", default=",".join(SIZES), help="which message sizes")
    parser.add_argument("--no-memory", action="store_true", help="skip the 25 MB attachment")
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=10.0,
        help="also run the 2 KB case into smtp-sink through a proxy that delays each "
        "direction by this many ms, like a real network (0: skip)",
    )
    parser.add_argument(
        "--delay-count",
        type=int,
        help="messages in the delayed case (default 300, 60 with --quick; at most --count)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (worker logs)")
    parser.add_argument(
        "--without",
        default="",
        help=f"comma-separated speed-ups to switch off for ours: {', '.join(SPEEDUPS)}",
    )
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        print("RESULT " + json.dumps(driver(json.loads(args.driver))), flush=True)
        return 0

    without = [w for w in args.without.split(",") if w]
    if set(without) - set(SPEEDUPS):
        print(f"--without takes some of {', '.join(SPEEDUPS)}")
        return 64
    count = args.count or (200 if args.quick else 2000)
    delay_count = args.delay_count or min(count, 60 if args.quick else 300)
    backends = [b for b in args.backends.split(",") if b]
    sinks = {"smtp-sink": _sinks.smtp_sink, "aiosmtpd": _sinks.aiosmtpd_sink}
    sinks = {k: v for k, v in sinks.items() if k in args.sinks.split(",")}
    sizes = {k: v for k, v in SIZES.items() if k in args.sizes.split(",")}
    if "smtp-sink" in sinks and not _sinks.smtp_sink_available():
        print("Postfix's smtp-sink is not installed: install postfix, or pass --sinks aiosmtpd")
        return 2
    if "redis-postgresql" in backends:
        for port, what in ((5432, "PostgreSQL"), (6379, "Redis")):
            try:
                socket.create_connection((LOOPBACK, port), timeout=2).close()
            except OSError:
                print(
                    f"{what} does not answer on {LOOPBACK}:{port}: start it, or pass "
                    f"--backends embedded"
                )
                return 2

    print(
        f"Mailroom pipeline benchmark: {count} messages per case to one recipient, one "
        f"account, {WORKERS} Celery worker processes (solo pool)"
    )
    print(
        f"machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; every sink behind a counting proxy on loopback\n",
        flush=True,
    )

    load_at_start = os.getloadavg()
    cases: list[Case] = []
    memory: dict | None = None
    workdir = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    timeout = max(300.0, count / 2)
    try:
        with contextlib.ExitStack() as stack:
            ports = {}
            proxies = {}
            counts: dict[str, int] = {}
            for name, start in sinks.items():
                sink_port = stack.enter_context(start())
                proxies[name] = stack.enter_context(_sinks.DelayProxy(sink_port, 0))
                ports[name] = sink_port
                counts[name] = count
            if args.delay_ms > 0 and "smtp-sink" in ports:
                # A real network: every round trip costs, so does every new connection.
                delayed = f"smtp-sink+{args.delay_ms:g}ms"
                proxies[delayed] = stack.enter_context(
                    _sinks.DelayProxy(ports["smtp-sink"], args.delay_ms / 1000)
                )
                counts[delayed] = delay_count
            case_sizes = {
                sink: {k: v for k, v in sizes.items() if counts[sink] == count or k == "2 KB"}
                for sink in proxies
            }
            baseline: dict[tuple[str, str], float] = {}
            for sink in proxies:
                for size, (body, att) in case_sizes[sink].items():
                    baseline[sink, size] = bare_smtplib(proxies[sink].port, counts[sink], body, att)
            for name in backends:
                with backend(name, workdir) as env:
                    for sink, proxy in proxies.items():
                        n = counts[sink]
                        for size, (body, att) in case_sizes[sink].items():
                            case = Case(name, sink, size, n, smtplib=baseline[sink, size])
                            spec = {
                                "port": proxy.port,
                                "count": n,
                                "body": body,
                                "attachment": att,
                                "timeout": timeout,
                                "logdir": str(workdir / name),
                                "without": without,
                            }
                            for mode in ("ours", "naive"):
                                reset_broker(env)
                                before = proxy.settle(0.3)
                                result = run_driver(env, {**spec, "mode": mode})
                                opened = proxy.settle() - before
                                rate = n / result["elapsed"]
                                if mode == "ours":
                                    case.ours, case.ours_connections = rate, opened
                                    case.ours_queue_rate = n / result["queued"]
                                    case.ours_connections_db = result["connections_by_attempts"]
                                    case.ours_rss_mb = result["peak_rss_mb"]
                                    case.ours_statuses = result["statuses"]
                                    case.ours_attempt_ms = result["attempt_ms"]
                                else:
                                    case.naive, case.naive_connections = rate, opened
                                    case.naive_rss_mb = result["peak_rss_mb"]
                            print_case(case)
                            cases.append(case)
                    if not args.no_memory and memory is None and "smtp-sink" in ports:
                        reset_broker(env)
                        memory = run_driver(
                            env,
                            {
                                "mode": "memory",
                                "port": ports["smtp-sink"],
                                "count": 0,
                                "body": 1000,
                                "attachment": 0,
                                "big": 25 * MB,
                                "timeout": timeout,
                                "logdir": str(workdir / name),
                            },
                        )
                        memory["backend"] = name
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report(cases, memory, count)
    print(
        f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"(at the start: {' '.join(f'{x:.1f}' for x in load_at_start)}; {os.cpu_count()} CPUs)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cases": [
                        asdict(c) | {"vs_smtplib": c.vs_smtplib, "vs_naive": c.vs_naive}
                        for c in cases
                    ],
                    "memory": memory,
                },
                indent=2,
            )
        )
    return 0


def report(cases: list[Case], memory: dict | None, count: int) -> None:
    print(
        "\nDetails (ours): the send service's own rate (queueing), the mean time of one delivery"
        " attempt in a worker (claim, SMTP, record), final states, connections counted at the"
        " sink / attempts that opened one"
    )
    for c in cases:
        print(
            f"  {c.backend:<17} {c.sink:<14} {c.size:<18} "
            f"queued at {c.ours_queue_rate:7.1f} msg/s, "
            f"attempt {c.ours_attempt_ms:5.1f} ms, states {c.ours_statuses}, "
            f"connections {c.ours_connections} / {c.ours_connections_db}"
        )
    print("\nTargets (Redis + PostgreSQL into smtp-sink):")
    for c in cases:
        if (c.backend, c.sink) != ("redis-postgresql", "smtp-sink"):
            continue
        checks = [
            (f"ours/smtplib >= {TARGETS[c.size]}", c.vs_smtplib, c.vs_smtplib >= TARGETS[c.size]),
            (f"ours/naive >= {TARGET_NAIVE}", c.vs_naive, c.vs_naive >= TARGET_NAIVE),
            (
                f"connections <= {TARGET_CONNECTIONS} for {count}",
                c.ours_connections,
                c.ours_connections <= TARGET_CONNECTIONS,
            ),
            (
                f"peak RSS per worker < {TARGET_RSS_MB:.0f} MB",
                round(c.ours_rss_mb, 1),
                c.ours_rss_mb < TARGET_RSS_MB,
            ),
        ]
        for what, value, ok in checks:
            shown = f"{value:.2f}×" if isinstance(value, float) and "ours/" in what else value
            print(f"  {c.size:<18} {what:<34} {shown!s:>8}  {'met' if ok else 'MISSED'}")
    delayed = [c for c in cases if c.sink.startswith("smtp-sink+")]
    if delayed:
        print(
            "\nThrough the delaying proxy (a real network's round trips; on plain loopback a new"
            " connection costs nothing, so 4x naive there would be above the bare loop itself):"
        )
    for c in delayed:
        ok = c.vs_naive >= TARGET_NAIVE
        print(
            f"  {c.backend:<17} {c.sink:<14} ours/naive >= {TARGET_NAIVE}  {c.vs_naive:6.2f}×  "
            f"{'met' if ok else 'MISSED'}   (ours/smtplib {c.vs_smtplib:4.2f}×, "
            f"{c.ours_connections} connections for {c.count})"
        )
    if memory is not None:
        ok = memory["growth_mb"] < TARGET_GROWTH_MB
        print(
            f"  {memory['message_mb']:.1f} MB message (25 MB attachment): worker grew by "
            f"{memory['growth_mb']:.1f} MB ({memory['before_mb']:.1f} MB RSS → "
            f"peak {memory['peak_mb']:.1f} MB, {memory['backend']}, "
            f"states {memory['statuses']})  < {TARGET_GROWTH_MB:.0f} MB  "
            f"{'met' if ok else 'MISSED'}"
        )


if __name__ == "__main__":
    sys.exit(main())
