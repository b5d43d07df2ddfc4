"""Mailroom's ESMTP client: pure Python (stdlib ``socket`` + ``ssl``), no Django.

from mailer.smtp import SMTPClient

with SMTPClient("smtp.example.org", 587, username="me", secret="…") as client:
    result = client.send("me@example.org", ["you@example.net"], eml_bytes)
"""

from . import errors
from .capabilities import Capabilities
from .client import Security, SMTPClient
from .replies import RecipientResult, Reply, SendResult, SMTPStatus

__all__ = [
    "Capabilities",
    "RecipientResult",
    "Reply",
    "SMTPClient",
    "SMTPStatus",
    "SendResult",
    "Security",
    "errors",
]
