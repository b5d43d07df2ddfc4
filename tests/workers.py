"""Real Celery workers for integration tests: start, stop and SIGKILL ``celery -A config
worker`` subprocesses against the test database and the test broker.

Usage (the test must see committed data: ``@pytest.mark.django_db(transaction=True)`` or
the ``transactional_db`` fixture)::

    from tests.workers import celery_worker, purge_queue

    def test_something(transactional_db):
        with celery_worker(beat=True, env={"MAILROOM_SWEEP_SECONDS": "1"}) as worker:
            ...                      # queue mail through mailer.services
            worker.wait_for_log("outcome=sent")
        # leaving the block stops the worker (SIGQUIT, then SIGKILL after a grace period)

    worker = start_worker(); worker.kill()   # SIGKILL, the whole process group, no goodbye

What the subprocess gets:

* the same settings module as the test run (``tests.settings``) and the same environment:
  the data directory (``MAILROOM_DATA_DIR``: filesystem broker, files, credential keys), the
  run id (so the same per-run Celery queue), the broker URL;
* ``DATABASE_URL`` pointing at the *test* database pytest-django created (SQLite file or
  ``test_mailroom_<run id>`` on PostgreSQL), so it sees what the test committed;
* any extra variables in ``env`` — settings read from the environment, e.g.
  ``MAILROOM_LEASE_SECONDS``, ``MAILROOM_SWEEP_SECONDS``, ``MAILROOM_CONNECTION_IDLE_SECONDS``,
  ``MAILROOM_CREDENTIALS_KEYS``: short intervals keep integration tests fast.

``beat=True`` runs the beat scheduler inside the worker (``-B``), so the sweeper runs every
``MAILROOM_SWEEP_SECONDS``. Each worker runs in its own session (process group) so that
``kill()`` takes its pool children with it. Its log goes to a file (``worker.log_path``);
``wait_for_log`` polls it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count(1)


def database_url_for_workers() -> str:
    """A DATABASE_URL for the database this test run is using (the test database)."""
    sd = connection.settings_dict
    engine = sd["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return f"sqlite:///{sd['NAME']}"
    if engine == "django.db.backends.postgresql":
        auth = sd.get("USER") or ""
        if sd.get("PASSWORD"):
            auth += f":{sd['PASSWORD']}"
        host = sd.get("HOST") or "127.0.0.1"
        port = sd.get("PORT") or 5432
        return f"postgres://{auth}{'@' if auth else ''}{host}:{port}/{sd['NAME']}"
    raise RuntimeError(f"tests/workers.py does not know how to hand {engine} to a worker")


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    url = database_url_for_workers()
    # tests/settings.py copies MAILROOM_TEST_DATABASE_URL over DATABASE_URL: set both.
    env["DATABASE_URL"] = url
    if env.get("MAILROOM_TEST_DATABASE_URL"):
        env["MAILROOM_TEST_DATABASE_URL"] = url
    env["MAILROOM_DATA_DIR"] = str(settings.DATA_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Worker:
    def __init__(self, *, concurrency: int = 1, beat: bool = False, pool: str = "prefork",
                 env: dict[str, str] | None = None, name: str | None = None) -> None:
        n = next(_counter)
        self.name = name or f"w{n}-{os.getpid()}"
        self.log_path = Path(settings.DATA_DIR) / f"worker-{self.name}.log"
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-n", f"{self.name}@%h", "--loglevel", "INFO", "--pool", pool,
            "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
            "--without-heartbeat", "--prefetch-multiplier", "1",
        ]
        if beat:
            cmd += ["-B", "-s", str(Path(settings.DATA_DIR) / f"beat-{self.name}")]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=worker_env(env), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, *, count: int = 1, timeout: float = 30.0) -> str:
        """Wait until ``needle`` appears ``count`` times in the worker's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log
            if text.count(needle) >= count:
                return text
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker {self.name} exited ({self.process.returncode}):\n{text[-3000:]}"
                )
            time.sleep(0.05)
        raise AssertionError(
            f"worker {self.name}: {needle!r} x{count} not seen in {timeout}s:\n{self.log[-3000:]}"
        )

    def wait_ready(self, timeout: float = 60.0) -> Worker:
        self.wait_for_log(" ready.", timeout=timeout)
        return self

    def stop(self, grace: float = 1.0) -> None:
        """Cold shutdown (SIGQUIT: tasks in progress are abandoned, as after a crash; a
        warm SIGTERM shutdown takes seconds), SIGKILL after ``grace`` seconds."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the worker and its pool children: no cleanup, no acknowledgement."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()


def start_worker(**kwargs) -> Worker:
    """Start a worker and wait until it consumes from the queue."""
    return Worker(**kwargs).wait_ready()


@contextlib.contextmanager
def celery_worker(**kwargs) -> Iterator[Worker]:
    worker = start_worker(**kwargs)
    try:
        yield worker
    except AssertionError as exc:
        _add_logs(exc, [worker])
        raise
    finally:
        worker.stop()


@contextlib.contextmanager
def celery_workers(n: int, **kwargs) -> Iterator[list[Worker]]:
    """``n`` workers started side by side (they boot in parallel)."""
    workers = [Worker(**kwargs) for _ in range(n)]
    try:
        for w in workers:
            w.wait_ready()
        yield workers
    except AssertionError as exc:
        _add_logs(exc, workers)
        raise
    finally:
        for w in workers:
            w.stop()


def _add_logs(exc: BaseException, workers: list[Worker]) -> None:
    """A failed assertion inside a worker block shows what the workers logged (CI keeps
    nothing else of a run)."""
    for w in workers:
        exc.add_note(f"--- worker {w.name} log, last 4000 characters ---\n{w.log[-4000:]}")


def wait_until(predicate, *, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` (e.g. a database query) until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not true after {timeout}s")


def purge_queue() -> int:
    """Drop every wake-up waiting in this run's queue (simulates lost broker messages)."""
    from config.celery import app

    return app.control.purge()
