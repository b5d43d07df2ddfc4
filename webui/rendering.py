"""Reading a frozen .eml for display: headers, text body, sanitised HTML body, attachments."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import nh3

SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")


@dataclass
class ParsedMessage:
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    html: str = ""
    attachments: list[tuple[str, int]] = field(default_factory=list)  # (name, decoded size)
    problem: str = ""


def parse_eml(data: bytes) -> ParsedMessage:
    try:
        msg: EmailMessage = BytesParser(policy=policy.default).parsebytes(data)
    except Exception as exc:  # a damaged file must not break the whole page
        return ParsedMessage(problem=f"The stored message could not be read ({exc}).")
    parsed = ParsedMessage()
    for name in SHOWN_HEADERS:
        value = msg.get(name)
        if value is not None:
            parsed.headers.append((name, str(value)))
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    if text_part is not None:
        parsed.text = text_part.get_content()
    if html_part is not None:
        parsed.html = html_part.get_content()
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True) or b""
        parsed.attachments.append((part.get_filename() or "(no name)", len(payload)))
    return parsed


def sanitise_html(html: str) -> str:
    """nh3 (ammonia) with its default allow-list: no scripts, no event handlers, no forms.
    Remote images stay in the markup but the iframe's CSP (img-src data:) never loads them."""
    return nh3.clean(html, link_rel="noopener noreferrer nofollow")
