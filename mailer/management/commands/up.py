"""``manage.py up`` (what ``python3 dev.py up`` runs): Mailroom on the embedded default.

Migrates, creates a login the first time (printed once), makes sure the login owns a ready
"Local sink" account, then runs web, a Celery worker, Celery beat and the dev sink as child
processes with prefixed output. Ctrl-C (SIGINT) or SIGTERM stops them all; if one of them
dies, the others are stopped too and the command exits non-zero.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

LOCAL_SINK_LABEL = "Local sink"
# How long children get to stop after SIGTERM before they are killed.
STOP_GRACE_SECONDS = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Runs the children, each in its own process group so that stopping one stops its own
    children too (the worker's pool, runserver's threads)."""

    def __init__(self, children: list[Child], env: dict[str, str], out) -> None:
        self.children = children
        self.env = env
        self.out = out
        self.width = max(len(c.name) for c in children)
        self._lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name:<{self.width}} | {line.rstrip()}\n")
            self.out.flush()

    def _pump(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for line in child.proc.stdout:
            self.say(child.name, line)

    def start(self) -> None:
        for child in self.children:
            child.proc = subprocess.Popen(
                child.argv,
                cwd=settings.BASE_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
            child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
            child.reader.start()

    def first_exited(self) -> Child | None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                return child
        return None

    def stop(self) -> None:
        """SIGTERM every child, wait, then SIGKILL what is left of each process group, so
        no grandchild outlives us. (Only the leader gets SIGTERM: Celery's worker stops its
        own pool, and hangs if the pool processes are terminated under it.)"""
        started = [c for c in self.children if c.proc is not None]
        for child in started:
            if child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in started:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(child.name, f"did not stop within {STOP_GRACE_SECONDS:.0f} s: killing it")
        for child in started:
            _signal_group(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
            if child.reader is not None:
                child.reader.join(timeout=2)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the group is already gone


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_login(out) -> object:
    """The user who gets the Local sink: a new ``admin`` (password printed once) when there
    is no user at all, else ``admin``, else the first superuser, else the first user."""
    User = get_user_model()
    if not User.objects.exists():
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser("admin", email="", password=password)
        out.write(
            "\nA login was created. The password is shown only this once:\n"
            f"    username: admin\n    password: {password}\n"
            "Forgot it? Set a new one with: python manage.py changepassword admin\n\n"
        )
        return user
    return (
        User.objects.filter(username="admin").first()
        or User.objects.filter(is_superuser=True).order_by("pk").first()
        or User.objects.order_by("pk").first()
    )


def ensure_local_sink_account(user, host: str, port: int):
    """A ready account pointing at the dev sink (created, or brought up to date)."""
    from mailer.models import SmtpAccount

    account, created = SmtpAccount.objects.get_or_create(
        owner=user,
        label=LOCAL_SINK_LABEL,
        defaults={
            "from_name": "Mailroom",
            # example.com is reserved for examples (RFC 2606) and passes address validation.
            "from_address": "admin@example.com",
            "is_default": not SmtpAccount.objects.filter(owner=user, is_default=True).exists(),
        },
    )
    account.host, account.port = host, port
    account.is_local_sink = True
    account.security = SmtpAccount.Security.NONE
    account.auth_mechanism = SmtpAccount.AuthMechanism.NONE
    account.username = ""
    account.set_secret("")
    account.paused_at, account.paused_reason = None, ""
    account.save()
    return account, created


def _children(web_server: str, host: str, port: int, sink_port: int, concurrency: int):
    """The four processes `up` runs: web, a Celery worker, Celery beat and the dev sink."""
    py, manage = sys.executable, str(settings.BASE_DIR / "manage.py")
    if web_server == "gunicorn":
        web = [
            py,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"{host}:{port}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
        ]
    else:
        web = [py, manage, "runserver", f"{host}:{port}", "--noreload"]
    children = [
        Child("web", web),
        Child(
            "worker",
            [
                py,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"worker-{os.getpid()}@%h",
            ],
        ),
        Child(
            "beat",
            [
                py,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(settings.DATA_DIR / "celerybeat-schedule"),
            ],
        ),
        Child("sink", [py, manage, "devsink", "--port", str(sink_port)]),
    ]
    return children


class Command(BaseCommand):
    help = (
        "Run Mailroom on the embedded default: migrate, create a login and a Local sink "
        "account if needed, then run web, a Celery worker, Celery beat and the dev sink "
        "together. Ctrl-C stops them all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="web address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument(
            "--sink-port", type=int, default=1025, help="dev sink port (default 1025)"
        )
        parser.add_argument(
            "--web",
            choices=["runserver", "gunicorn"],
            default="runserver",
            help="web server (default: Django's runserver)",
        )
        parser.add_argument(
            "--concurrency", type=int, default=2, help="Celery worker processes (default 2)"
        )

    def handle(self, *args, **opts):
        if settings.PRODUCTION:
            raise CommandError(
                "`up` runs Mailroom for development (SQLite, the filesystem broker, a local "
                "sink). In production run docker-compose.yml, or gunicorn and Celery yourself "
                "(see the README)."
            )
        host, port, sink_port = opts["host"], opts["port"], opts["sink_port"]
        for what, where, option in (("web", port, "--port"), ("sink", sink_port, "--sink-port")):
            if not _port_free(host if what == "web" else "127.0.0.1", where):
                raise CommandError(
                    f"Port {where} is already in use, so the {what} server cannot start (is "
                    f"Mailroom already running?). Stop the other program or choose another "
                    f"port with {option}."
                )

        self.stdout.write(f"Data directory: {settings.DATA_DIR}")
        self.stdout.write("Applying database migrations ...")
        call_command("migrate", interactive=False, verbosity=0)
        user = ensure_login(self.stdout)
        account, created = ensure_local_sink_account(user, "127.0.0.1", sink_port)
        self.stdout.write(
            f"{'Created' if created else 'Using'} the account “{account.label}” for "
            f"{user.get_username()}: mail sent through it lands in "
            f"{settings.DATA_DIR / 'sink'} as .eml files."
        )

        children = _children(opts["web"], host, port, sink_port, opts["concurrency"])
        env = dict(os.environ)
        env.update(
            PYTHONUNBUFFERED="1",
            # The real 404/500 pages, as a user will see them; a developer opts in to
            # Django's debug pages with DEBUG=true.
            DEBUG=os.environ.get("DEBUG", "false"),
            MAILROOM_DATA_DIR=str(settings.DATA_DIR),
            DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        )
        return self._supervise(Supervisor(children, env, self.stdout), host, port)

    def _supervise(self, sup: Supervisor, host: str, port: int) -> None:
        stop = threading.Event()
        previous = {
            sig: signal.signal(sig, lambda *_: stop.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        died: Child | None = None
        announced = False
        try:
            sup.start()
            while not stop.wait(0.3):
                died = sup.first_exited()
                if died is not None:
                    break
                if not announced and _answers(host, port):
                    announced = True
                    self.stdout.write(
                        f"\nMailroom is running at http://{host}:{port}/ — "
                        "press Ctrl-C to stop web, worker, beat and sink.\n"
                    )
            self.stdout.write("Stopping web, worker, beat and sink ...")
        finally:
            sup.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if died is not None:
            raise CommandError(
                f"The {died.name} process stopped unexpectedly (exit code "
                f"{died.proc.returncode}), so everything was stopped. Its last lines are "
                f"above, prefixed with “{died.name}”."
            )
        self.stdout.write("Stopped.")
