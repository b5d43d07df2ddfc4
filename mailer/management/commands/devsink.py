"""``manage.py devsink``: run the local development sink (see ``mailer.devsink``)."""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mailer.devsink import DevSink, parse_auth


def sink_folder():
    return settings.DATA_DIR / "sink"


class Command(BaseCommand):
    help = (
        "Run a local SMTP sink that stores every message it receives as an .eml file "
        "(with its envelope in a .json file) under <MAILROOM_DATA_DIR>/sink/."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=1025, help="port (default 1025)")
        parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
        parser.add_argument(
            "--auth",
            action="append",
            default=[],
            metavar="USER:PASSWORD_ENV",
            help="require AUTH; the password is read from the environment variable named "
            "after the colon (repeat for more users)",
        )
        parser.add_argument(
            "--starttls",
            action="store_true",
            help="offer STARTTLS with a self-signed certificate kept in the sink folder",
        )

    def handle(self, *args, **options):
        try:
            users = dict(parse_auth(spec) for spec in options["auth"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        folder = sink_folder()
        sink = DevSink(
            folder,
            host=options["host"],
            port=options["port"],
            users=users,
            starttls=options["starttls"],
        )
        try:
            sink.start()
        except OSError as exc:
            raise CommandError(
                f"The sink cannot listen on {options['host']}:{options['port']} ({exc}). "
                f"Is another sink already running? Pick another port with --port."
            ) from exc

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        extras = []
        if users:
            extras.append(f"AUTH required for {', '.join(sorted(users))}")
        if sink.cert_path:
            extras.append(f"STARTTLS with the self-signed certificate {sink.cert_path}")
        self.stdout.write(
            f"Dev sink listening on {options['host']}:{options['port']}; "
            f"messages go to {folder}"
            + (f" ({'; '.join(extras)})" if extras else "")
            + ". Stop with Ctrl-C.",
        )
        self.stdout.flush()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            sink.stop()
            self.stdout.write(
                f"Dev sink stopped after {sink.stats.messages} message(s) "
                f"on {sink.stats.connections} connection(s)."
            )
