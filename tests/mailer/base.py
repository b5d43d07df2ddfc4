"""Shared personas and helpers for the mailer tests (STYLE 19: a base that creates an
owner, a second user and a stranger). Import the fixtures through ``tests/mailer/conftest.py``."""

from __future__ import annotations

import hashlib

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile

from mailer import services
from mailer.models import Attachment, Draft, OutboxMessage, SmtpAccount


def make_user(username: str):
    return get_user_model().objects.create_user(
        username, f"{username}@example.com", "pw-" + username
    )


def make_account(owner, server=None, **fields) -> SmtpAccount:
    secret = fields.pop("secret", None)
    defaults = {
        "label": "Test account",
        "from_address": f"{owner.username}@example.com",
        "from_name": owner.username.title(),
        "host": "127.0.0.1",
        "port": server.port if server is not None else 25,
        "security": SmtpAccount.Security.NONE,
        "auth_mechanism": SmtpAccount.AuthMechanism.NONE,
    }
    defaults.update(fields)
    account = SmtpAccount(owner=owner, **defaults)
    if secret is not None:
        account.set_secret(secret)
    account.save()
    return account


def make_draft(owner, account, *, attachments=(), **fields) -> Draft:
    defaults = {"to": "alice@example.org", "subject": "Hello", "body_text": "Hi there.\n"}
    defaults.update(fields)
    draft = Draft.objects.create(owner=owner, account=account, **defaults)
    for name, ctype, data in attachments:
        att = Attachment(draft=draft, filename=name, content_type=ctype, size=len(data),
                         sha256=hashlib.sha256(data).hexdigest())
        att.file.save(name, ContentFile(data), save=False)
        att.save()
    return draft


def send(owner, account, *, hold_seconds=0, send_at=None, **fields) -> OutboxMessage:
    """Queue a message through the real send service."""
    draft = make_draft(owner, account, **fields)
    return services.send_draft(owner, draft, hold_seconds=hold_seconds, send_at=send_at)


def statuses(message: OutboxMessage) -> dict[str, str]:
    return dict(message.recipients.values_list("address", "status"))
