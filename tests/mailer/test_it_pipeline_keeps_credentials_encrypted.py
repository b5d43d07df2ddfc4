import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from mailer.models import OutboxMessage
from tests.mailer.base import make_account, send
from tests.mailer.pipeline import FAST
from tests.mailer.servers import ScriptedSink
from tests.workers import celery_worker, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def _stored_secret(account) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT secret_encrypted FROM mailer_smtpaccount WHERE id = %s", [account.pk])
        return cur.fetchone()[0]


def _sent(msg):
    return lambda: OutboxMessage.objects.get(pk=msg.pk).status == "sent"


def test_a_worker_logs_in_with_the_encrypted_secret_and_survives_key_rotation(owner, settings):
    old = settings.MAILROOM_CREDENTIALS_KEYS[0]
    new = Fernet.generate_key().decode()
    with ScriptedSink(accounts={"owner": PASSWORD}) as server:
        account = make_account(owner, server, username="owner", secret=PASSWORD,
                               auth_mechanism="auto", allow_plaintext_auth=True)
        before = _stored_secret(account)
        assert PASSWORD not in before and "horse" not in before

        with celery_worker(env={**FAST, "MAILROOM_CREDENTIALS_KEYS": old}) as worker:
            first = send(owner, account, subject="before rotation")
            wait_until(_sent(first), what="sent with the old key")
        assert PASSWORD not in worker.log and "horse" not in worker.log

        # Rotate: the new key in front, re-encrypt, then a worker that knows only the new key.
        settings.MAILROOM_CREDENTIALS_KEYS = [new, old]
        call_command("rotatekeys")
        after = _stored_secret(account)
        assert after != before and PASSWORD not in after
        with celery_worker(env={**FAST, "MAILROOM_CREDENTIALS_KEYS": new}):
            second = send(owner, account, subject="after rotation")
            wait_until(_sent(second), what="sent with the new key only")
    assert len(server.received) == 2
