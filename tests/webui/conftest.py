"""Personas and objects for the web UI tests (STYLE 19): an owner with an account, a draft
and a message, and a stranger who must never reach them."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.test import Client

from mailer import services
from mailer.models import Attachment, DeliveryAttempt, Draft, OutboxMessage, SmtpAccount
from tests.webui.browser import browser, page  # noqa: F401  (fixtures for the browser tests)

# A recognisable secret: no response may ever contain it.
SECRET = "Tr0ub4dor-and-3-SECRET-sauce"
PASSWORD = "correct horse battery staple"


def make_user(username: str):
    return get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)


def make_account(owner, **fields) -> SmtpAccount:
    values = {
        "label": "Work", "from_name": "Owen Owner", "from_address": "owen@example.com",
        "host": "127.0.0.1", "port": 2525, "security": "starttls", "username": "owen",
    }
    values.update(fields)
    account = SmtpAccount(owner=owner, **values)
    account.set_secret(SECRET)
    account.save()
    return account


def make_draft(owner, account, *, files=(), **fields) -> Draft:
    values = {"to": "alice@example.org", "subject": "Quarterly report", "body_text": "Hello.\n"}
    values.update(fields)
    draft = Draft.objects.create(owner=owner, account=account, **values)
    for name, data in files:
        attachment = Attachment(draft=draft, filename=name, content_type="text/plain",
                                size=len(data), sha256=hashlib.sha256(data).hexdigest())
        attachment.file.save("x", ContentFile(data), save=False)
        attachment.save()
    return draft


def make_message(owner, account, *, status=None, **fields) -> OutboxMessage:
    """A message frozen through the real send service (the wake-up only fires on commit,
    which a test transaction never does), then put in ``status`` for the page under test."""
    message = services.send_draft(owner, make_draft(owner, account, **fields), hold_seconds=0)
    if status:
        OutboxMessage.objects.filter(pk=message.pk).update(status=status)
        message.refresh_from_db()
    return message


def make_many(owner, account, count: int, *, status: str) -> None:
    """``count`` more messages in ``status``, in one query (pages of 50 and more)."""
    template = make_message(owner, account)
    OutboxMessage.objects.bulk_create([
        OutboxMessage(owner=owner, account=account, status=status, eml=template.eml.name,
                      envelope_from="owen@example.com", message_id=f"<{i}@x>", subject=f"M{i}")
        for i in range(count)
    ])


def add_attempt(message, **fields) -> DeliveryAttempt:
    import uuid

    from django.utils import timezone

    values = {"attempt_id": uuid.uuid4(), "started_at": timezone.now(),
              "finished_at": timezone.now(), "outcome": "failed"}
    values.update(fields)
    return DeliveryAttempt.objects.create(message=message, **values)


@pytest.fixture(autouse=True)
def _empty_cache():
    # Counts and sign-in counters live in the cache, keyed by user ids that the next test
    # reuses: start each test with an empty one.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner(db):
    return make_user("owen")


@pytest.fixture
def stranger(db):
    return make_user("stella")


@pytest.fixture
def client_for():
    def login(user) -> Client:
        client = Client()
        client.force_login(user)
        return client
    return login


@pytest.fixture
def owner_client(owner, client_for) -> Client:
    return client_for(owner)


@pytest.fixture
def stranger_client(stranger, client_for) -> Client:
    return client_for(stranger)


@pytest.fixture
def account(owner):
    return make_account(owner, is_default=True)


@pytest.fixture
def draft(owner, account):
    return make_draft(owner, account, files=[("notes.txt", b"some notes\n")])


@pytest.fixture
def message(owner, account):
    return make_message(owner, account, files=[("notes.txt", b"some notes\n")])
