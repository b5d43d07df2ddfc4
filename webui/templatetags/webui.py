"""Small display helpers for the templates."""

from __future__ import annotations

from functools import cache

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from mailer import services

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


@cache
def _message_prefix() -> str:
    return reverse("message", args=[0])[: -len("0/")]


@register.filter
def message_url(pk) -> str:
    """``/messages/<pk>/`` without a ``reverse()`` per row (the history shows 50 rows)."""
    return f"{_message_prefix()}{int(pk)}/"


def _local(value, fmt: str) -> str:
    """``value|date:...`` for the two formats of a history row (strftime is ~10× faster)."""
    return timezone.localtime(value).strftime(fmt)


@register.simple_tag
def outbox_row(m, oob: bool = False) -> str:
    """One history row. In Python rather than an included template: the history renders
    50 of them per page (and the live poll as many), and Django's template engine made up
    half of that page's time. Every value goes through ``format_html``'s escaping."""
    if m.sent_at:
        when = _local(m.sent_at, "%Y-%m-%d %H:%M")
    elif m.scheduled_at:
        when = "for " + _local(m.scheduled_at, "%Y-%m-%d %H:%M")
    else:
        when = _local(m.created_at, "%Y-%m-%d %H:%M")
    next_try = ""
    if m.status == "deferred" and m.next_attempt_at:
        next_try = format_html(' <span class="muted small nowrap">· next try {}</span>',
                               _local(m.next_attempt_at, "%H:%M"))
    split = getattr(m, "split", None)
    split_words = (format_html(' <span class="split muted small nowrap">{}</span>', split.words())
                   if split is not None and (split.mixed or split.failed) else "")
    return format_html(
        '<tr id="message-row-{pk}" data-status="{status}"{oob}>\n'
        '  <td><span class="badge badge-{status}">{label}</span>{split}</td>\n'
        '  <td class="subject"><a href="{url}">{subject}</a>{next_try}</td>\n'
        '  <td class="clip">{to}</td>\n'
        '  <td class="opt">{account}</td>\n'
        '  <td class="nowrap muted small">{when}</td>\n'
        "</tr>",
        pk=m.pk,
        status=m.status,
        split=split_words,
        oob=mark_safe(' hx-swap-oob="true"') if oob else "",
        label=m.get_status_display(),
        url=message_url(m.pk),
        subject=m.subject or "(no subject)",
        next_try=next_try,
        to=m.to_display,
        account=getattr(m, "account_label", "") or "—",
        when=when,
    )
