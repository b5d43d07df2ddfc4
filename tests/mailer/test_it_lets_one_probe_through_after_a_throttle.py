"""When a throttle runs out, exactly one message goes first as a probe, even when several
workers claim the account's mail at the same instant (on PostgreSQL in the services pass)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from mailer import delivery
from mailer.models import SmtpAccount
from tests.mailer.base import make_account, send


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
def test_racing_claims_let_exactly_one_probe_through(owner, smtp_server):
    account = make_account(owner, smtp_server)
    ids = [send(owner, account).pk for _ in range(8)]
    SmtpAccount.objects.filter(pk=account.pk).update(
        throttled_until=timezone.now() - timedelta(seconds=1))

    barrier, won = threading.Barrier(len(ids)), []

    def claim(pk):
        barrier.wait()
        try:
            if delivery.claim(pk, worker=f"w{pk}") is not None:
                won.append(pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(pk,)) for pk in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1
