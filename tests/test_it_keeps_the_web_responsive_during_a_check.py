"""Issue 11: "Test connection" against a server that accepts and never greets must not hold
a web worker. Under gunicorn as the Dockerfile runs it (one sync worker, 30 s timeout), with
a real Celery worker: the click answers at once, an unrelated GET /login/ answers quickly
while the check hangs, and the check ends with a plain-words verdict after its deadline."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from django.test import Client

from mailer.models import AccountCheck, SmtpAccount
from tests.hostile_servers import HostileServer
from tests.ports import free_port
from tests.webui.conftest import make_user
from tests.workers import ROOT, celery_worker, wait_until, worker_env

# pipeline: both passes (SQLite + filesystem broker, then PostgreSQL + Redis).
pytestmark = [pytest.mark.slow, pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]

DEADLINE = "4"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _gunicorn(port: int) -> subprocess.Popen:
    env = worker_env({"MAILROOM_CHECK_DEADLINE_SECONDS": DEADLINE})
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "1", "--timeout", "30", "--env",
         "DJANGO_SETTINGS_MODULE=tests.settings"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # quiet
        start_new_session=True,
    )


def _timed(opener, url: str, data: dict | None = None) -> tuple[float, int, str]:
    started = time.monotonic()
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with opener.open(url, data=body, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:  # a 302 that was not followed
        status, text = exc.code, ""
    return time.monotonic() - started, status, text


def test_a_hanging_check_does_not_hold_the_web_worker(transactional_db):
    owner = make_user("owen")
    client = Client()
    client.force_login(owner)  # a session row the web server reads from the same database
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    anonymous = urllib.request.build_opener(_NoRedirect)  # someone else, signing in
    port = free_port()
    with HostileServer("silent") as silent:
        account = SmtpAccount.objects.create(
            owner=owner, label="Silent", from_address="owen@example.com", host="127.0.0.1",
            port=silent.port, security="none", auth_mechanism="none", is_default=True)
        web = _gunicorn(port)
        try:
            with celery_worker(env={"MAILROOM_CHECK_DEADLINE_SECONDS": DEADLINE}):
                base = f"http://127.0.0.1:{port}"
                session = client.cookies["sessionid"].value
                opener.addheaders = [("Cookie", f"sessionid={session}")]

                def page_answers():
                    try:
                        return _timed(anonymous, f"{base}/login/")[1] == 200
                    except OSError:
                        return False

                wait_until(page_answers, timeout=60, what="gunicorn answers")
                _, _, page = _timed(opener, f"{base}/accounts/{account.pk}/")
                token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
                csrf = next(c.value for c in jar if c.name == "csrftoken")
                opener.addheaders = [("Cookie", f"sessionid={session}; csrftoken={csrf}")]

                took, status, _ = _timed(opener, f"{base}/accounts/{account.pk}/check/",
                                         {"csrfmiddlewaretoken": token})
                assert status == 302 and took < 2, (status, took)
                wait_until(lambda: AccountCheck.objects.filter(
                    account=account, status="running").exists(), timeout=30,
                    what="the worker runs the check")
                # The check hangs on the silent server in the worker; the web worker is free.
                took, status, _ = _timed(anonymous, f"{base}/login/")
                assert status == 200 and took < 2, took
                took, status, page = _timed(opener, f"{base}/accounts/{account.pk}/")
                assert status == 200 and took < 2, took
                assert "Testing the connection" in page
                assert AccountCheck.objects.get(account=account).status == "running"

                wait_until(lambda: AccountCheck.objects.filter(
                    account=account, status="done").exists(), timeout=30,
                    what="the check ends at its deadline")
                check = AccountCheck.objects.get(account=account)
                assert (check.finished_at - check.started_at).total_seconds() < float(DEADLINE) + 2
                _, _, page = _timed(opener, f"{base}/accounts/{account.pk}/")
                assert "It did not work." in page
                assert "did not finish the greeting, encryption and login within 4 s" in page
        finally:
            web.terminate()
            web.wait(10)
