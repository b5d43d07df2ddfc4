"""``manage.py up`` for real (what ``python3 dev.py up`` runs): a fresh data dir, free ports,
the login printed once works, a message sent with ``manage.py sendmail`` through the Local
sink lands as an .eml, and every child process is gone after SIGINT — or after one of them
dies, which makes ``up`` stop the rest and exit non-zero."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email import message_from_bytes, policy
from pathlib import Path

import psutil
import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _env(data_dir: Path) -> dict[str, str]:
    # The embedded default, whatever this test run uses (pass 2 sets PostgreSQL + Redis).
    drop = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "MAILROOM_", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(MAILROOM_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="config.settings")
    return env


def _wait_for(what: str, check, timeout: float = 60.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"`up` exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Up:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = _env(data_dir)
        self.port, self.sink_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "up",
                "--port",
                str(self.port),
                "--sink-port",
                str(self.sink_port),
                "--concurrency",
                "1",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def wait_until_serving(self) -> None:
        _wait_for("the web server", lambda: "Mailroom is running at" in self.output, proc=self.proc)
        _wait_for("the worker", lambda: re.search(r"worker .*ready\.", self.output), proc=self.proc)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def finish(self, timeout: float = 40.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:  # do not leave a runaway `up` behind a failed test
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=30)
            self._reader.join(timeout=5)


def _login(up: Up, password: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(up.url("/login/"), timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": "admin", "password": password}
    ).encode()
    request = urllib.request.Request(
        up.url("/login/"), data=form, headers={"Referer": up.url("/login/")}
    )
    with opener.open(request, timeout=10) as response:  # follows the redirect home
        assert "/login/" not in response.url, "the printed login was refused"
    return opener.open(up.url("/accounts/"), timeout=10).read().decode()


def _gone(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_up_runs_everything_delivers_to_the_sink_and_stops_cleanly(tmp_path):
    first = Up(tmp_path)
    try:
        first.wait_until_serving()
        password = re.search(r"password: (\S+)", first.output).group(1)
        assert "python manage.py changepassword admin" in first.output

        # The login page answers, and the printed login works and owns the Local sink.
        accounts_page = _login(first, password)
        assert "Local sink" in accounts_page

        # A message through the Local sink arrives as an .eml in the sink folder.
        message_id = first.manage(
            "sendmail",
            "--user",
            "admin",
            "--account",
            "Local sink",
            "--to",
            "bob@example.com",
            "--bcc",
            "hidden@example.com",
            "--subject",
            "Through up",
            "--body",
            "Hello from the test.",
        ).strip()
        sink = tmp_path / "sink"
        [eml] = _wait_for("the .eml in the sink", lambda: list(sink.glob("*.eml")), proc=first.proc)
        received = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert received["Subject"] == "Through up" and "Bcc" not in received
        envelope = json.loads(eml.with_suffix(".json").read_text())
        assert sorted(envelope["rcpt_tos"]) == ["bob@example.com", "hidden@example.com"]
        row = _wait_for(
            "the outbox to record the delivery",
            lambda: [
                r
                for r in json.loads(first.manage("outbox", "--json"))
                if str(r["id"]) == message_id and r["status"] == "sent"
            ],
            proc=first.proc,
        )
        assert {r["status"] for r in row[0]["recipients"]} == {"accepted"}

        # DEBUG is off: a wrong address shows the site's own 404 page, not Django's debug
        # page with every URL pattern; the static files are served all the same.
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(first.url("/no/such/page/"), timeout=10)
        body = missing.value.read().decode()
        assert missing.value.code == 404 and "Page not found" in body
        assert "URLconf" not in body and "DEBUG = True" not in body
        with urllib.request.urlopen(first.url("/static/webui/app.css"), timeout=10) as css:
            assert css.status == 200 and b"{" in css.read()

        # Every file and folder of the data dir is private to its user (the database, the
        # frozen .eml, the broker's folders, the sink's mail, the keys).
        exposed = [
            f"{oct(path.stat().st_mode & 0o777)} {path.relative_to(tmp_path)}"
            for path in [tmp_path, *tmp_path.rglob("*")]
            if path.stat().st_mode & 0o077
        ]
        assert exposed == []

        # One child dies: `up` stops the others and exits non-zero, saying which.
        children = first.descendants()
        names = " ".join(" ".join(p.cmdline()) for p in children)
        assert all(part in names for part in ("runserver", "celery", "worker", "beat", "devsink"))
        sink_proc = next(p for p in children if "devsink" in p.cmdline())
        sink_proc.kill()
        assert first.finish() != 0
    finally:
        first.finish()
    assert "The sink process stopped unexpectedly" in first.output
    assert _gone(children) == []

    # Again on the same data dir: no new login, the same account; Ctrl-C stops everything.
    second = Up(tmp_path)
    try:
        second.wait_until_serving()
        children = second.descendants()
        assert len(children) >= 5  # web, worker (+ its pool), beat, sink
        second.proc.send_signal(signal.SIGINT)
        assert second.finish() == 0
    finally:
        second.finish()
    assert "password:" not in second.output and "Using the account “Local sink”" in second.output
    assert "Stopped." in second.output
    assert _gone(children) == []
