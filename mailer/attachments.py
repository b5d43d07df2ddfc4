"""Attachments: the one constructor every way in uses (the compose page's uploads,
``manage.py sendmail``, "Edit as new draft"), so a file is stored, hashed and named the same
way whichever path brought it."""

from __future__ import annotations

import hashlib
import mimetypes
import uuid
from pathlib import PurePath
from typing import IO

from django.core.files import File

from mailer.models import Attachment, Draft

# Attachment.filename's column width.
MAX_NAME = Attachment._meta.get_field("filename").max_length or 255


def display_name(name: str | None) -> str:
    """The file's name as stored and sent: never empty, at most ``MAX_NAME`` characters,
    shortened in its stem so the extension (what tells the recipient's mail program how to
    open it: ".pdf", ".tar.gz") is kept."""
    name = (name or "").strip() or "attachment"
    if len(name) <= MAX_NAME:
        return name
    suffixes = "".join(PurePath(name).suffixes[-2:])
    if len(suffixes) > 20 or len(suffixes) >= len(name):  # not a real extension
        suffixes = PurePath(name).suffix if len(PurePath(name).suffix) <= 20 else ""
    stem = name[: len(name) - len(suffixes)]
    return stem[: MAX_NAME - len(suffixes) - 1].rstrip() + "…" + suffixes


def add(draft: Draft, *, name: str | None, content: IO[bytes], content_type: str | None = None,
        size: int | None = None) -> Attachment:
    """Store ``content`` (a binary file object, read in chunks) as an attachment of
    ``draft`` under a generated storage name, with its SHA-256 and size."""
    digest, total = hashlib.sha256(), 0
    wrapped = content if isinstance(content, File) else File(content)
    for chunk in wrapped.chunks():
        digest.update(chunk)
        total += len(chunk)
    wrapped.seek(0)
    shown = display_name(name)
    attachment = Attachment(
        draft=draft,
        filename=shown,
        content_type=content_type or mimetypes.guess_type(shown)[0] or "application/octet-stream",
        size=total if size is None else size,
        sha256=digest.hexdigest(),
    )
    attachment.file.save(uuid.uuid4().hex, wrapped, save=False)
    attachment.save()
    return attachment
