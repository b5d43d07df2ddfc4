"""Three worker processes send through one OAuth2 account while its access tokens expire
every 2 seconds: each expiry costs exactly one refresh at the provider, whichever worker
needs the token first, and no message fails or waits (a second refresh with the same
rotated refresh token would be refused as invalid_grant and pause the account).

Every message opens a new connection (MAILROOM_CONNECTION_IDLE_SECONDS=0), so every
message needs a live token. The provider (tests/oauth_server) and the token-checking SMTP
server are the real parts of tests/mailer/test_it_sends_with_an_oauth_account.py."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from mailer import services
from mailer.models import OutboxMessage
from mailer.oauth import providers
from tests.mailer.base import send
from tests.mailer.pipeline import FAST
from tests.mailer.servers import ScriptedSink
from tests.mailer.test_it_sends_with_an_oauth_account import sign_in
from tests.oauth import PROVIDER, configure, provider_env
from tests.workers import Worker, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def test_three_workers_refresh_once_per_expiry(owner, oauth_server, settings):
    with ScriptedSink(token_check=oauth_server.token_check) as sink:
        configure(settings, oauth_server, sink.port)
        provider = providers.get(PROVIDER)
        account = services.save_sign_in(owner, provider, sign_in(oauth_server, provider, "alice"))
        env = {**FAST, **provider_env(oauth_server, sink.port),
               "MAILROOM_CONNECTION_IDLE_SECONDS": "0"}
        workers = [Worker(env=env) for _ in range(3)]
        try:
            for w in workers:
                w.wait_ready()
            before = oauth_server.refreshes()
            started = time.monotonic()
            msgs = []
            while time.monotonic() - started < 12:  # six token lifetimes
                msgs.append(send(owner, account, subject=f"n{len(msgs)}"))
                time.sleep(0.1)
            wait_until(lambda: OutboxMessage.objects.filter(status="sent").count() == len(msgs),
                       timeout=60, what="every message sent")
            elapsed = time.monotonic() - started
        finally:
            for w in workers:
                w.stop()
        refreshes = oauth_server.refreshes() - before

    account.refresh_from_db()
    assert account.paused_at is None
    assert not OutboxMessage.objects.exclude(status="sent").exists()
    assert sorted(r.message_id for r in sink.received) == sorted(m.message_id for m in msgs)
    # Each refresh the provider saw was made by exactly one worker, and each renewed a
    # token that had run its course: refreshes at least a lifetime minus the margin apart
    # (1.5 s; 1.2 s allows for scheduling).
    stamps = sorted(
        datetime.strptime(_STAMP.search(line).group(1), "%Y-%m-%d %H:%M:%S,%f")
        for w in workers for line in w.log.splitlines()
        if "oauth account=" in line and "refreshed" in line
    )
    assert len(stamps) == refreshes, (len(stamps), refreshes)
    assert 4 <= refreshes <= elapsed / 1.5 + 1, (refreshes, elapsed)
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) >= 1.2, gaps
    # The work (and the refreshing) really was shared.
    assert sum(1 for w in workers if "outcome=sent" in w.log) >= 2
