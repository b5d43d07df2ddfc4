"""Save to Sent, against a real IMAP server (Dovecot, ``tests/imap_server.py``: implicit TLS
and STARTTLS with its own CA, SPECIAL-USE folders, quotas) and a real SMTP server: an
accepted message is copied once into the folder flagged \\Sent, as the exact bytes that
went out plus a Bcc line, flagged \\Seen; a worker killed between the APPEND and recording
it leaves one copy, not two; a missing folder, a full mailbox or a server that is down
gives a clear recorded reason and never touches delivery state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mailer import delivery
from mailer.imap import sentcopy, session
from mailer.models import ImapSettings, OutboxMessage, SentCopy
from tests.imap_server import start_dovecot
from tests.mailer.base import make_account, send
from tests.mailer.servers import ScriptedSink
from tests.ports import free_port

pytestmark = pytest.mark.pipeline  # on SQLite, and again on PostgreSQL + Redis


@pytest.fixture
def sink():
    with ScriptedSink() as server:
        yield server


def _account(owner, sink, imap_server, *, user="owen", security="tls", **imap):
    account = make_account(owner, sink, label=f"{user} via IMAP",
                           from_address=f"{user}@example.test",
                           ca_certificate=imap_server.ca_pem)
    port = imap_server.tls_port if security == "tls" else imap_server.starttls_port
    settings_ = ImapSettings(account=account, host=imap_server.host, port=port,
                             security=security, username=user, **imap)
    settings_.set_secret(imap_server.users[user])
    settings_.save()
    return account


def _sent(owner, account, **fields) -> OutboxMessage:
    msg = send(owner, account, **fields)
    assert delivery.deliver(msg.pk) == "sent"
    msg.refresh_from_db()
    return msg


def test_it_saves_the_exact_bytes_once_with_the_bcc_line(owner, sink, dovecot):
    account = _account(owner, sink, dovecot)
    msg = _sent(owner, account, to="ann@example.org", bcc="hidden@example.org")
    assert sentcopy.save_due() == 1
    copy = SentCopy.objects.get(message=msg)
    assert (copy.status, copy.folder, copy.detail) == ("saved", "Sent", "Saved in “Sent”.")
    stored = dovecot.messages("owen", "Sent")
    with msg.eml.open("rb") as fh:
        frozen = fh.read()
    assert stored == [b"Bcc: hidden@example.org\r\n" + frozen]
    assert b"hidden@example.org" not in sink.received[0].data  # never on the wire
    assert b"\\Seen" in dovecot.flags("owen", "Sent")[0]
    assert sentcopy.save_due() == 0  # saved is saved
    msg.refresh_from_db()
    assert msg.status == "sent"


def test_a_worker_killed_between_append_and_recording_leaves_one_copy(
    owner, sink, dovecot, monkeypatch
):
    account = _account(owner, sink, dovecot, user="carol", security="starttls")
    msg = _sent(owner, account)
    real = session.append_once

    def append_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise SystemExit("killed after the APPEND, before the result was recorded")

    # In-process stand-in for the kill (the process ends before it writes anything);
    # the row stays claimed until its lease runs out, as after a real crash.
    monkeypatch.setattr(session, "append_once", append_then_die)
    with pytest.raises(SystemExit):
        sentcopy.save(msg.pk)
    monkeypatch.setattr(session, "append_once", real)
    copy = SentCopy.objects.get(message=msg)
    assert copy.status == "pending" and copy.claimed_until is not None
    assert sentcopy.save(msg.pk) is None  # still leased: nobody else takes it yet
    SentCopy.objects.filter(pk=copy.pk).update(claimed_until=timezone.now() - timedelta(1))

    assert sentcopy.save_due() == 1
    copy.refresh_from_db()
    assert copy.status == "saved" and "already there" in copy.detail
    assert len(dovecot.messages("carol", "Sent")) == 1


def test_a_missing_folder_is_said_plainly_and_delivery_is_untouched(owner, sink, dovecot):
    account = _account(owner, sink, dovecot, sent_folder="Gesendet")
    msg = _sent(owner, account)
    sentcopy.save_due()
    copy = SentCopy.objects.get(message=msg)
    assert copy.status == "failed"
    assert "found no Sent folder" in copy.detail
    msg.refresh_from_db()
    assert msg.status == "sent" and msg.recipients.get().status == "accepted"


def test_a_full_mailbox_waits_and_says_so(owner, sink, tmp_path_factory):
    import shutil
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
    directory.chmod(0o755)
    small = start_dovecot(directory, {"owen": "pw-small-1"}, quota="2k")
    try:
        account = _account(owner, sink, small)
        msg = _sent(owner, account, body_text="x" * 8000 + "\n")
        assert sentcopy.save(msg.pk) == "pending"
    finally:
        small.stop()
        shutil.rmtree(directory, ignore_errors=True)
    copy = SentCopy.objects.get(message=msg)
    assert "The mailbox is full (over its quota)" in copy.detail
    assert "OVERQUOTA" in copy.detail  # the server's own words
    assert copy.next_attempt_at > timezone.now() + timedelta(seconds=50)  # backoff


def test_a_server_that_does_not_answer_is_retried_then_given_up(
    owner, sink, dovecot, settings
):
    settings.MAILROOM_SENT_COPY_ATTEMPTS = 2
    account = _account(owner, sink, dovecot)
    ImapSettings.objects.filter(account=account).update(port=free_port())  # nobody listens
    msg = _sent(owner, account)
    assert sentcopy.save(msg.pk) == "pending"
    copy = SentCopy.objects.get(message=msg)
    assert "Could not connect to the IMAP server" in copy.detail
    assert "connection refused" in copy.detail
    SentCopy.objects.filter(pk=copy.pk).update(next_attempt_at=timezone.now())
    assert sentcopy.save(msg.pk) == "failed"
    msg.refresh_from_db()
    assert msg.status == "sent"


def test_nothing_is_copied_when_switched_off_or_before_imap_was_set_up(owner, sink, dovecot):
    account = _account(owner, sink, dovecot, save_to_sent=False)
    _sent(owner, account)
    before = _sent(owner, _account(owner, sink, dovecot, user="carol"))
    ImapSettings.objects.filter(account=before.account).update(
        enabled_at=timezone.now() + timedelta(minutes=1))
    assert sentcopy.save_due() == 0
    assert not SentCopy.objects.exists()


def test_a_wrong_imap_password_is_not_retried_blindly(owner, sink, dovecot):
    account = _account(owner, sink, dovecot)
    imap = account.imap
    imap.set_secret("not-the-password")
    imap.save()
    msg = _sent(owner, account)
    assert sentcopy.save(msg.pk) == "failed"
    detail = SentCopy.objects.get(message=msg).detail
    assert "refused the IMAP login" in detail and "not-the-password" not in detail
    # The account itself keeps sending.
    assert delivery.deliver(send(owner, account).pk) == "sent"


@pytest.mark.django_db(transaction=True)
def test_the_worker_that_delivered_saves_the_copy_at_once(owner, sink, dovecot):
    """A real Celery worker without beat: the copy is saved because the delivering worker
    asked for it (``sentcopy.wanted_after``), not because a periodic pass came by."""
    from tests.mailer.pipeline import FAST
    from tests.workers import celery_worker, wait_until

    account = _account(owner, sink, dovecot, user="carol")
    before = len(dovecot.messages("carol", "Sent"))
    with celery_worker(env={**FAST, "MAILROOM_SWEEP_SECONDS": "3600"}):
        msg = send(owner, account, to="ann@example.org")
        wait_until(lambda: SentCopy.objects.filter(message=msg, status="saved").exists(),
                   what="the copy saved")
    assert len(dovecot.messages("carol", "Sent")) == before + 1
    assert OutboxMessage.objects.get(pk=msg.pk).status == "sent"
