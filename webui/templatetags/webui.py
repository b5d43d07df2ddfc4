"""Small display helpers for the templates."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from mailer import services
from webui import rows

register = template.Library()


@register.filter
def filesize(num_bytes) -> str:
    """1536 → "1.5 KB" (binary units, as file managers show them)."""
    try:
        size = float(num_bytes or 0)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


@register.simple_tag
def badge(status: str, label: str = "") -> str:
    """A status badge: colour by status, the status in words (never colour alone)."""
    return format_html('<span class="badge badge-{}">{}</span>', status, label or status)


@register.simple_tag
def explain(code, enhanced, text, error_class=None) -> str:
    """The plain-words reason for a server reply, without the server's words: the page
    shows those beside it (``mailer.services.explain``)."""
    return services.explain(code or None, enhanced or None, text or None, error_class or None,
                            server_words=False)


register.filter("message_url", rows.message_url)
register.simple_tag(rows.outbox_row, name="outbox_row")
