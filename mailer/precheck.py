"""Checks before queueing, against the account's capability snapshot.

The snapshot (``SmtpAccount.capabilities``, the JSON of ``Capabilities.to_dict()``) is the
server's last EHLO answer. A message that the server would refuse anyway — bigger than its
SIZE, an international address without SMTPUTF8, 8-bit content without 8BITMIME — is
refused at compose time, with a message next to the field, instead of failing later.

Without a snapshot (the account never connected) nothing is refused here: the server's
own answer will decide, and the policy explains it.

:func:`problems` is pure; :func:`check_message` is what ``services.send_draft`` calls;
:func:`estimated_size` lets the compose page warn while attachments are being added.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["check_message", "encoded_size", "estimated_size", "problems"]

# RFC 2045 section 6.8: base64 turns 3 bytes into 4 characters, in lines of 76 plus CRLF.
_B64_LINE = 76
# Headers of the message and of each MIME part, generously (Date, Message-ID, boundaries…).
_MESSAGE_HEADERS = 2048
_PART_HEADERS = 300
_ATTACHMENT = re.compile(rb"^Content-Disposition:[ \t]*attachment", re.IGNORECASE | re.MULTILINE)
_FIELD_NAMES = {"to": "To", "cc": "Cc", "bcc": "Bcc"}


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def encoded_size(raw: int) -> int:
    """Bytes that ``raw`` bytes take once base64-encoded for mail (a third more, plus CRLFs)."""
    chars = 4 * -(-raw // 3)
    return chars + 2 * -(-chars // _B64_LINE)


def estimated_size(body_bytes: int, attachment_sizes: Iterable[int] = ()) -> int:
    """About how big a message will be on the wire, before it is built: the bodies (quoted-
    printable, counted generously as base64) and every attachment base64-encoded, plus
    headers."""
    sizes = list(attachment_sizes)
    parts = 1 + len(sizes)
    return (
        _MESSAGE_HEADERS
        + parts * _PART_HEADERS
        + encoded_size(body_bytes)
        + sum(encoded_size(s) for s in sizes)
    )


class _Snapshot:
    """Read a capability snapshot; ``to_dict()`` carries both the flags and the raw
    extensions, and either is enough."""

    def __init__(self, caps: Mapping) -> None:
        self.caps = caps
        self.extensions = {str(k).upper() for k in caps.get("extensions") or {}}

    def offers(self, flag: str, keyword: str) -> bool:
        if flag in self.caps:
            return bool(self.caps[flag])
        return keyword in self.extensions

    @property
    def size(self) -> int | None:
        size = self.caps.get("size")
        # RFC 1870: SIZE 0 means "no fixed limit".
        return int(size) if size else None


def problems(
    capabilities: Mapping | None,
    *,
    size: int,
    recipients: Iterable[tuple[str, str]] = (),
    envelope_from: str = "",
    eight_bit: bool = False,
    smtputf8: bool = False,
    server: str = "the server",
    size_field: str = "attachments",
) -> dict[str, list[str]]:
    """What the server (as last seen) would refuse, in plain words, per form field.

    ``size`` is the encoded message size in bytes; ``recipients`` are ``(address, kind)``
    with kind ``to``/``cc``/``bcc`` (the field a problem is reported on); ``eight_bit`` says
    whether the message bytes are not 7-bit clean; ``smtputf8`` whether the message will be
    sent with SMTPUTF8 (its own 8-bit headers are then fine where SMTPUTF8 is offered).
    """
    if not capabilities:
        return {}
    snap = _Snapshot(capabilities)
    found: dict[str, list[str]] = {}
    if snap.size is not None and size > snap.size:
        found.setdefault(size_field, []).append(
            f"The message is {_mb(size)} as sent (attachments grow by about a third when "
            f"encoded), but {server} accepts at most {_mb(snap.size)}. Remove or shrink "
            f"attachments, or share large files as a link."
        )
    has_utf8 = snap.offers("smtputf8", "SMTPUTF8")
    if not has_utf8:
        for address, kind in recipients:
            if not address.isascii():
                found.setdefault(kind, []).append(
                    f"{_FIELD_NAMES.get(kind, kind)}: “{address}” has non-ASCII characters "
                    f"before the @, and {server} does not offer international addresses "
                    f"(SMTPUTF8). Use an ASCII address for this recipient or send from "
                    f"another account."
                )
        if envelope_from and not envelope_from.isascii():
            found.setdefault("account", []).append(
                f"This account's From address “{envelope_from}” has non-ASCII characters "
                f"before the @, and {server} does not offer international addresses "
                f"(SMTPUTF8). Choose another account."
            )
    needs_8bit = eight_bit and not (smtputf8 and has_utf8)
    if needs_8bit and not snap.offers("eightbitmime", "8BITMIME"):
        found.setdefault("body_text", []).append(
            f"The message contains 8-bit text and {server} does not accept it (no 8BITMIME). "
            f"Send it from another account."
        )
    return found


def check_message(account, frozen) -> None:
    """Refuse, with per-field messages, a frozen message (``mime.FrozenMessage``) the
    account's server would refuse. Raises ``django.core.exceptions.ValidationError``."""
    from django.core.exceptions import ValidationError

    if not account.capabilities:
        return  # never connected: nothing to check against (as in problems), so skip the scan
    eml: bytes = frozen.eml
    found = problems(
        account.capabilities,
        size=len(eml),
        recipients=frozen.recipients,
        envelope_from=frozen.envelope_from,
        eight_bit=not eml.isascii(),
        smtputf8=frozen.smtputf8,
        server=f"the server of “{account.label}” ({account.host})",
        size_field="attachments" if _ATTACHMENT.search(eml) else "body_text",
    )
    if found:
        raise ValidationError(found)
