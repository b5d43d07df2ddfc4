"""Shared personas for the table-driven bad-input suites (``tests/test_bad_input_*.py``):
the web UI's helpers (``tests/webui/conftest.py``) as fixtures for files outside
``tests/webui``, and the checks every case makes: a clear error in plain words, and
nothing lost."""

from __future__ import annotations

import hashlib

from mailer.models import Draft, OutboxMessage

# The web UI's personas, as fixtures for these files outside tests/webui: importing the
# fixture functions here (and ``*`` from here) is how pytest finds them.
from tests.webui.conftest import (  # noqa: F401
    _empty_cache,
    account,
    client_for,
    owner,
    owner_client,
    stranger,
    stranger_client,
)

# What ``from tests.bad_input import *`` brings: the fixtures (helpers are imported by name).
__all__ = ["_empty_cache", "account", "client_for", "owner", "owner_client", "stranger",
           "stranger_client"]


def fingerprint(draft: Draft) -> dict:
    """What a draft holds: every typed field and every attachment (name, content hash)."""
    draft.refresh_from_db()
    files = []
    for a in draft.attachments.order_by("pk"):
        with a.file.open("rb") as fh:
            files.append((a.filename, hashlib.sha256(fh.read()).hexdigest()))
    fields = ("account_id", "to", "cc", "bcc", "reply_to", "subject", "body_text", "body_html")
    return {**{f: getattr(draft, f) for f in fields}, "files": files}


def assert_clear_error(text: str, *words: str) -> None:
    """The error names the problem (``words``) and reads as a sentence, not a traceback."""
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in {text!r}"
    assert "Traceback" not in text and "Exception" not in text


def assert_draft_kept(owner, **typed) -> Draft:
    """Exactly one draft, holding what was typed; nothing was queued."""
    assert OutboxMessage.objects.filter(owner=owner).count() == 0
    drafts = list(Draft.objects.filter(owner=owner))
    assert len(drafts) == 1, drafts
    held = fingerprint(drafts[0])
    for name, value in typed.items():
        assert held[name] == value, (name, held[name], value)
    return drafts[0]
