"""The header objects of frozen messages, made once where the stdlib makes them anew.

The stdlib builds a header class with ``type()`` for every header set, parses the same
``Content-Type`` and ``MIME-Version`` for every message, and parses the same account's
``From`` and the same recipients message after message. The objects it builds depend only
on the header's name and value and are never changed once made, so messages share them;
the policies are the stdlib's otherwise, so the bytes are the same (``mailer.mime`` builds
with these; ``mime.validate_address`` keeps a memo of the same kind).

Why: measured by ``bench/pipeline.py --without header-cache`` (2,000 messages of 2 KB
into smtp-sink, Redis + PostgreSQL, two runs each, 2026-12-06): with the cache 1.25× the
throughput without it (95.5 against 76.6 msg/s), the sending service being the bound.
"""

from __future__ import annotations

import functools
from email import policy as email_policy
from email.headerregistry import HeaderRegistry
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailer.mime import ParsedAddress


class _HeaderClasses(HeaderRegistry):
    """The stdlib registry, minus work that gives the same answer every time.

    The stdlib's ``__getitem__`` builds a new class with ``type()`` on every header set,
    read or folded — about a third of the cost of building a small message — and the
    classes it builds are all alike, so one per header name serves every message. And the
    MIME headers the stdlib sets itself (``Content-Type: text/plain; charset="utf-8"``,
    ``MIME-Version: 1.0`` …) are parsed once per distinct value, not once per message:
    a header object depends only on its name and value and is never changed after it is
    made, so messages can share it."""

    _SHARED = frozenset({"content-type", "content-transfer-encoding", "mime-version"})

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}
        self._shared = functools.lru_cache(maxsize=256)(super().__call__)

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value):
        if isinstance(value, str) and name.lower() in self._SHARED:
            return self._shared(name, str(value))
        return super().__call__(name, value)


# The stdlib policies with that registry; the same policies otherwise, so the same bytes.
POLICY_SMTP = email_policy.SMTP.clone(header_factory=_HeaderClasses())
POLICY_SMTPUTF8 = email_policy.SMTPUTF8.clone(header_factory=_HeaderClasses())


@functools.lru_cache(maxsize=1024)
def address_header(policy, name: str, addresses: tuple[ParsedAddress, ...]):
    """The header object for an address field, made once per distinct value: the same
    account's From and the same recipients come back message after message, and parsing
    an address header is most of the cost of setting it. The key is the exact value, so
    an account whose name or address changes gets a new header."""
    return policy.header_factory(name, [a.header_address() for a in addresses])
