"""Delivery reports read: what a report or bounce found in a mailbox says, per recipient.
No Django, no database, no network: bytes in, a :class:`Report` (or None) out.

- Standard reports (RFC 3464: ``multipart/report; report-type=delivery-status``) are read
  with the standard library's email package: the envelope id (Original-Envelope-Id), the
  Reporting-MTA, and per recipient Original-Recipient / Final-Recipient, Action, Status,
  Remote-MTA and Diagnostic-Code; the returned message's Message-ID from its
  ``message/rfc822`` or ``text/rfc822-headers`` part.
- Other bounces (Exchange, qmail, Yahoo, older Postfix and Exim...) by Mailman's detectors,
  flufl.bounce: the addresses that failed for good or for now; the Message-ID from the
  returned message or the headers quoted in the text.

Never raises on bad input (a malformed report, broken encodings, missing parts): it returns
what it could read, or None for a message that is no report at all. A diagnostic written in
HTML is turned into its text.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import html
import logging
import quopri
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

import nh3
from flufl.bounce import all_failures

log = logging.getLogger("mailer.imap")

__all__ = ["RecipientReport", "Report", "parse"]

#: Actions (RFC 3464 §2.3.3) → the state the recipient takes.
ACTIONS = {"failed": "bounced", "delayed": "delayed", "delivered": "delivered",
           "relayed": "delivered", "expanded": "delivered",
           "failure": "bounced"}  # "failure": not RFC 3464, but some MTAs write it
_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_CODE = re.compile(r"^\s*([245]\d\d)(?:[ -]+(.*))?$", re.DOTALL)
# HTML in a diagnostic (some servers answer with a web page): its tags, not an <address>.
_TAGS = (r"\s*/?\s*(?:html|head|body|p|br|b|i|u|em|strong|div|span|font|a|table|tr|td|th|ul|"
         r"li|h[1-6]|pre|code|title|meta|style|script)\b")
_TAG = re.compile(f"<{_TAGS}[^<>]*>", re.IGNORECASE)
_NOT_A_TAG = re.compile(f"<(?!{_TAGS})", re.IGNORECASE)  # an <address>, a "<" in words


@dataclass
class RecipientReport:
    address: str  # as the sender gave it (Original-Recipient), else the Final-Recipient
    state: str  # "bounced", "delayed" or "delivered"
    status: str = ""  # the enhanced status code, e.g. "5.1.1"
    remote_mta: str = ""
    code: int | None = None  # the SMTP reply code of the diagnostic, e.g. 550
    text: str = ""  # the remote server's words, as text


@dataclass
class Report:
    kind: str  # "standard" (RFC 3464) or "other"
    envid: str = ""
    message_ids: list[str] = field(default_factory=list)  # of the returned message
    reporting_mta: str = ""
    arrived_at: datetime | None = None
    subject: str = ""
    recipients: list[RecipientReport] = field(default_factory=list)


def parse(raw: bytes) -> Report | None:
    """What the report in ``raw`` says, or None when it is no delivery report or bounce."""
    try:
        msg = message_from_bytes(raw, policy=compat32)
        report = _standard(msg)
        if report is None or not report.recipients:
            # No usable status part: the detectors may still find who failed.
            other = _other(msg)
            if other is not None and report is not None:
                other.envid, other.reporting_mta = report.envid, report.reporting_mta
            report = other or report
    except Exception:  # noqa: BLE001 - a report is untrusted input: unreadable is "no report"
        log.warning("a message that looked like a report could not be read", exc_info=True)
        return None
    if report is not None:
        report.subject = _header(msg, "Subject")
        report.arrived_at = _date(msg)
    return report


# --- standard reports ----------------------------------------------------------------------


def _standard(msg: Message) -> Report | None:
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type") or "").lower() != "delivery-status":
        return None
    blocks = _status_blocks(msg)
    if not blocks:
        return None  # a report without its status part: the other detectors may know it
    fields, per_recipient = blocks[0], blocks[1:]
    report = Report(kind="standard", envid=_xtext_decode(_value(fields, "Original-Envelope-Id")),
                    reporting_mta=_typed(_value(fields, "Reporting-MTA")),
                    message_ids=_returned_ids(msg))
    for block in per_recipient:
        recipient = _recipient(block)
        if recipient is not None and not any(
                r.address.lower() == recipient.address.lower() for r in report.recipients):
            report.recipients.append(recipient)  # once per address (some MTAs repeat it)
    return report


def _status_blocks(msg: Message) -> list[Message]:
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        encoding = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
        if isinstance(payload, list) and encoding in ("7bit", "8bit", "binary"):
            return [block for block in payload if isinstance(block, Message)]
        # Encoded (base64, quoted-printable): the parser split the encoded text into
        # "blocks"; join it back, decode it, and split it ourselves.
        text = _decoded_text(part) if isinstance(payload, str) else _decode(
            "".join(b.as_string() if isinstance(b, Message) else str(b) for b in payload), encoding)
        return [HeaderParser(policy=compat32).parsestr(chunk.strip() + "\n")
                for chunk in re.split(r"\r?\n\s*\r?\n", text) if chunk.strip()]
    return []


def _recipient(block: Message) -> RecipientReport | None:
    original = _typed(_value(block, "Original-Recipient"))
    final = _typed(_value(block, "Final-Recipient"))
    action = _value(block, "Action").lower().split()[0:1]
    state = ACTIONS.get(action[0]) if action else None
    address = _xtext_decode(original or final)
    if not address or state is None:
        return None
    code, text = _diagnostic(_value(block, "Diagnostic-Code"))
    status = _value(block, "Status").split(" ")[0][:20]
    if status and text.startswith(status + " "):
        text = text[len(status) + 1:]  # shown beside it already
    return RecipientReport(address=address, state=state, status=status,
                           remote_mta=_typed(_value(block, "Remote-MTA"))[:255],
                           code=code, text=text)


def _diagnostic(value: str) -> tuple[int | None, str]:
    """``smtp; 550 5.1.1 <x@y>: user unknown`` → (550, "5.1.1 <x@y>: user unknown")."""
    kind, sep, rest = value.partition(";")
    text = (rest if sep else kind).strip()
    if _TAG.search(text):
        text = html.unescape(nh3.clean(_NOT_A_TAG.sub("&lt;", text), tags=set())).strip()
        text = " ".join(text.split())
    found = _CODE.match(text) if sep and kind.strip().lower() == "smtp" else None
    if found:
        return int(found.group(1)), (found.group(2) or "").strip()[:2000]
    return None, text[:2000]


# --- other bounces ---------------------------------------------------------------------------


def _other(msg: Message) -> Report | None:
    temporary, permanent = all_failures(msg)
    if not temporary and not permanent:
        return None
    report = Report(kind="other", message_ids=_returned_ids(msg))
    for state, found in (("bounced", permanent), ("delayed", temporary)):
        for address in sorted(found):
            text = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
            if not any(r.address.lower() == text.lower() for r in report.recipients):
                report.recipients.append(RecipientReport(address=text, state=state))
    return report


def _returned_ids(msg: Message) -> list[str]:
    """The Message-ID of the message the report is about: from the returned message or
    its headers, else from header lines quoted in the report's text."""
    ids: list[str] = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/rfc822-headers"):
            inner = part.get_payload()
            for returned in inner if isinstance(inner, list) else []:
                if isinstance(returned, Message) and returned.get("Message-ID"):
                    ids.append(_header(returned, "Message-ID"))
        elif kind == "text/rfc822-headers":
            headers = HeaderParser(policy=compat32).parsestr(_decoded_text(part))
            if headers.get("Message-ID"):
                ids.append(_header(headers, "Message-ID"))
    if not ids:
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                ids.extend(_MESSAGE_ID.findall(_decoded_text(part)))
    own = _header(msg, "Message-ID")
    return [i.strip() for i in dict.fromkeys(ids) if i.strip() and i.strip() != own]


# --- reading values safely -------------------------------------------------------------------


def _decoded_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data.decode(part.get_content_charset() or "utf-8", "replace")
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


def _decode(text: str, encoding: str) -> str:
    data = text.encode("ascii", "replace")
    try:
        raw = base64.b64decode(data) if encoding == "base64" else quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return ""
    return raw.decode("utf-8", "replace")


def _value(block: Message, name: str) -> str:
    raw = block.get(name)
    if raw is None:
        return ""
    text = str(raw).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())  # unfolded


def _header(msg: Message, name: str) -> str:
    raw = msg.get(name)
    if raw is None:
        return ""
    try:
        text = str(make_header(decode_header(str(raw))))
    except (LookupError, UnicodeError, ValueError, TypeError):
        text = str(raw)
    return " ".join(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").split())


def _typed(value: str) -> str:
    """``rfc822; ann@example.org`` → ``ann@example.org`` (``dns; mx.example.org`` likewise)."""
    _kind, sep, rest = value.partition(";")
    return (rest if sep else value).strip().strip("<>")


def _xtext_decode(value: str) -> str:
    """RFC 3461 §4: ``+2B`` → ``+``."""
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def _date(msg: Message) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(_header(msg, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
