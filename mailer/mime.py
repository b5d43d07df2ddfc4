"""Freezing a draft into the exact bytes handed to the server (ARCHITECTURE invariant 2).

Built with the stdlib ``email`` package: a text part, an optional HTML alternative,
attachments (RFC 2231 names), RFC 2047 encoded subjects and display names, SMTPUTF8
addresses (RFC 6532) when an address needs them, ``Date`` and a ``Message-ID`` on the
account's domain. ``Bcc`` recipients are in the envelope only, never in a header.
Addresses are checked with email-validator (IDN aware, no DNS look-ups).
"""

from __future__ import annotations

import functools
import mimetypes
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

import email_validator
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from email_validator import EmailNotValidError, validate_email

from mailer import headers
from mailer.validators import control_character, has_line_break

ADDRESS_FIELDS = ("to", "cc", "bcc", "reply_to")
FIELD_NAMES = {
    "to": "To",
    "cc": "Cc",
    "bcc": "Bcc",
    "reply_to": "Reply-To",
    "subject": "Subject",
    "from_address": "From",
    "from_name": "From name",
}


@dataclass(frozen=True)
class ParsedAddress:
    display_name: str
    address: str  # normalized: IDN domains in A-labels when the local part is ASCII
    smtputf8: bool  # the address itself needs SMTPUTF8 (non-ASCII local part)

    def header_address(self) -> Address:
        username, _, domain = self.address.rpartition("@")
        return Address(display_name=self.display_name, username=username, domain=domain)


@dataclass
class FrozenMessage:
    eml: bytes
    message_id: str
    envelope_from: str
    recipients: list[tuple[str, str]]  # (address, kind) in envelope order, no duplicates
    subject: str
    to_display: str
    smtputf8: bool
    warnings: list[str] = field(default_factory=list)
    attachment_count: int = 0  # files in the message (send_draft moves that many rows)


def check_header_value(value: str, name: str, errors: dict[str, list[str]], key: str) -> None:
    """A line break inside a value would let input add headers of its own (header
    injection); a control character has no place in a header either."""
    if has_line_break(value):
        errors.setdefault(key, []).append(
            f"{name} contains a line break. Header fields must be on one line: "
            f"remove the line break and try again."
        )
    elif bad := control_character(value):
        errors.setdefault(key, []).append(
            f"{name} contains a control character ({bad}), which cannot go into a mail "
            f"header: remove it and try again."
        )


# Whether a domain exists is the SMTP server's call, not Mailroom's (ARCHITECTURE
# invariant 8): company relays deliver .local, .internal, .lan and single-label hosts
# (root@localhost), and test setups live on .test. email-validator refuses IANA's
# special-use names even with globally_deliverable=False; its documented knob for that is
# this list, emptied here so that only malformed addresses are refused. Nothing else in
# Mailroom's processes asks email-validator for global deliverability.
email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()


@functools.lru_cache(maxsize=4096)  # part of the header cache: see mailer.headers
def validate_address(raw: str) -> tuple[str, bool]:
    """Return (normalized address, needs SMTPUTF8) or raise ``EmailNotValidError``.

    Every syntactically valid address (RFC 5321/5322/6531) is accepted: reserved and
    internal domains, single-label hosts and domain literals (``user@[192.0.2.1]``,
    ``user@[IPv6:2001:db8::1]``) included; only what is malformed is refused.

    Memoised: the answer depends on the string alone (no DNS look-ups), and the same
    senders and recipients come back message after message. Failures are not cached."""
    info = validate_email(
        raw,
        check_deliverability=False,
        allow_smtputf8=True,
        globally_deliverable=False,
        allow_domain_literal=True,
    )
    ascii_form = info.ascii_email  # None when the local part is not ASCII
    if ascii_form:
        return ascii_form, False
    return info.normalized, True


def parse_address_list(text: str, key: str, errors: dict[str, list[str]]) -> list[ParsedAddress]:
    """Parse a comma-separated list as typed ("Ann <ann@example.com>, bob@example.org").
    Problems are added to ``errors[key]``, one message per address."""
    label = FIELD_NAMES.get(key, key)
    if not text.strip():
        return []
    check_header_value(text, label, errors, key)
    if key in errors:
        return []
    result: list[ParsedAddress] = []
    for piece in split_addresses(text):
        name, addr = parseaddr(piece)
        name, addr = name.strip(), addr.strip()
        # parseaddr gives ("", "") for what it cannot parse; validate what was typed then.
        shown = addr or piece
        try:
            normalized, utf8 = validate_address(addr or piece)
        except EmailNotValidError as exc:
            errors.setdefault(key, []).append(f"{label}: '{shown}' is not a valid address: {exc}")
            continue
        if key in ("to", "cc", "bcc") and (refusal := _outside_allowed_domains(normalized)):
            errors.setdefault(key, []).append(f"{label}: '{shown}' {refusal}")
            continue
        result.append(ParsedAddress(name, normalized, utf8))
    return result


def _outside_allowed_domains(address: str) -> str:
    """The operator's optional restriction (``MAILROOM_ALLOWED_RECIPIENT_DOMAINS``; empty,
    the default, allows every domain): a domain in the list or a subdomain of one."""
    allowed = settings.MAILROOM_ALLOWED_RECIPIENT_DOMAINS
    if not allowed:
        return ""
    domain = address.rpartition("@")[2].lower()
    if any(domain == d or domain.endswith("." + d) for d in allowed):
        return ""
    return (
        "is outside the domains this Mailroom may send to ("
        + ", ".join(allowed)
        + "). Ask the operator to allow it, or remove the address."
    )


def split_addresses(text: str) -> list[str]:
    """Split a typed list on commas (and semicolons) outside quotes and angle brackets, so
    one bad address does not hide the others."""
    pieces, current, quoted, angle = [], [], False, 0
    for ch in text:
        if ch == '"' and not angle:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle += 1
        elif ch == ">" and not quoted and angle:
            angle -= 1
        elif ch in ",;" and not quoted and not angle:
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    pieces.append("".join(current))
    return [p.strip() for p in pieces if p.strip()]


def _message_id_domain(address: str) -> str:
    domain = address.rpartition("@")[2] or "localhost"
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "localhost"


def _cte(text: str) -> str:
    # Quoted-printable keeps non-ASCII text 7-bit clean, so no server needs 8BITMIME.
    return (
        "7bit"
        if text.isascii() and all(len(x) <= 998 for x in text.splitlines())
        else "quoted-printable"
    )


def _add_attachment(msg: EmailMessage, data: bytes, filename: str, content_type: str) -> None:
    ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    maintype, _, subtype = ctype.partition("/")
    if not subtype or not maintype.isascii():
        maintype, subtype = "application", "octet-stream"
    # Bytes, base64-encoded, whatever the type: the file arrives exactly as uploaded.
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)


def build_message(
    *,
    account,
    to: str,
    cc: str = "",
    bcc: str = "",
    reply_to: str = "",
    subject: str = "",
    body_text: str = "",
    body_html: str = "",
    attachments: list[tuple[str, str, bytes]] = (),
    date: datetime | None = None,
    message_id: str | None = None,
) -> FrozenMessage:
    """Freeze the given fields into a message. ``attachments`` holds
    (filename, content type, bytes). Raises ``ValidationError`` with per-field messages."""
    parsed, sender, sender_utf8 = _checked_fields(
        account, to, cc, bcc, reply_to, subject, [name for name, _, _ in attachments]
    )
    smtputf8 = sender_utf8 or any(a.smtputf8 for lst in parsed.values() for a in lst)
    # SMTPUTF8 (RFC 6532) lets headers carry raw UTF-8; otherwise RFC 2047 encoded words.
    pol = headers.POLICY_SMTPUTF8 if smtputf8 else headers.POLICY_SMTP
    msg = EmailMessage(policy=pol)
    msg["From"] = headers.address_header(
        pol, "From", (ParsedAddress(account.from_name, sender, sender_utf8),)
    )
    for key, name in (("to", "To"), ("cc", "Cc"), ("reply_to", "Reply-To")):
        if parsed[key]:
            msg[name] = headers.address_header(pol, name, tuple(parsed[key]))
    msg["Subject"] = subject
    # A datetime, not its text: the header formats it with format_datetime either way, and
    # is spared parsing the text back.
    msg["Date"] = date or timezone.now()
    msg["Message-ID"] = message_id or make_msgid(domain=_message_id_domain(sender))
    msg.set_content(body_text or "", cte=_cte(body_text or ""))
    if body_html:
        msg.add_alternative(body_html, subtype="html", cte=_cte(body_html))
    for name, ctype, data in attachments:
        _add_attachment(msg, data, name, ctype)

    to_display = ", ".join(a.display_name or a.address for a in parsed["to"] + parsed["cc"])
    return FrozenMessage(
        eml=msg.as_bytes(policy=pol),
        message_id=msg["Message-ID"],
        envelope_from=sender,
        recipients=_envelope_recipients(parsed),
        subject=subject,
        to_display=to_display,
        smtputf8=smtputf8,
        attachment_count=len(attachments),
    )


def _checked_fields(
    account,
    to: str,
    cc: str,
    bcc: str,
    reply_to: str,
    subject: str,
    attachment_names: list[str],
) -> tuple[dict[str, list[ParsedAddress]], str, bool]:
    """Every field checked at once (all errors, per field): the parsed address lists, the
    sender and whether it needs SMTPUTF8. Raises ``ValidationError``."""
    errors: dict[str, list[str]] = {}
    parsed = {
        "to": parse_address_list(to, "to", errors),
        "cc": parse_address_list(cc, "cc", errors),
        "bcc": parse_address_list(bcc, "bcc", errors),
        "reply_to": parse_address_list(reply_to or account.reply_to, "reply_to", errors),
    }
    check_header_value(subject, "The subject", errors, "subject")
    check_header_value(account.from_name, "The sender name", errors, "from_name")
    try:
        sender, sender_utf8 = validate_address(account.from_address)
    except EmailNotValidError as exc:
        errors.setdefault("from_address", []).append(
            f"The account's From address '{account.from_address}' is not valid: {exc} "
            f"Fix it in the account settings."
        )
        sender, sender_utf8 = "", False
    for name in attachment_names:
        if has_line_break(name) or control_character(name):
            shown = "".join(c if c.isprintable() else "?" for c in name.strip())
            errors.setdefault("attachments", []).append(
                f"The attachment name '{shown}' contains a line break or a control "
                "character; rename the file."
            )
    if not (parsed["to"] or parsed["cc"] or parsed["bcc"]) and "to" not in errors:
        errors.setdefault("to", []).append("Add at least one recipient (To, Cc or Bcc).")
    if errors:
        raise ValidationError(errors)
    return parsed, sender, sender_utf8


def _envelope_recipients(parsed: dict[str, list[ParsedAddress]]) -> list[tuple[str, str]]:
    """(address, kind) for To, then Cc, then Bcc, each address once (case-insensitively)."""
    recipients: list[tuple[str, str]] = []
    seen: set[str] = set()
    for kind in ("to", "cc", "bcc"):
        for a in parsed[kind]:
            if a.address.lower() not in seen:
                seen.add(a.address.lower())
                recipients.append((a.address, kind))
    return recipients


def build_from_draft(draft, *, date: datetime | None = None) -> FrozenMessage:
    attachments = []
    for att in draft.attachments.all():
        with att.file.open("rb") as fh:
            attachments.append((att.filename, att.content_type, fh.read()))
    return build_message(
        account=draft.account,
        to=draft.to,
        cc=draft.cc,
        bcc=draft.bcc,
        reply_to=draft.reply_to,
        subject=draft.subject,
        body_text=draft.body_text,
        body_html=draft.body_html,
        attachments=attachments,
        date=date,
    )
