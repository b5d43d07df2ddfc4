"""The history's rows, rendered in Python rather than by an included template.

Why: the history renders 50 rows per page (and its live poll as many), and Django's
template engine made up half of that page's time. Measured by ``bench/pages.py`` (100,000
messages × 3 recipients, the included template it replaced against this, alternating
rounds, 2026-12-06): the included template takes 1.52× this on SQLite's first page and
1.66× on the live poll; 1.03× on PostgreSQL's first page (there the queries dominate) and
1.32× on its live poll. ``webui/templatetags/webui.py`` registers these as the
``outbox_row`` tag and the ``message_url`` filter.
"""

from __future__ import annotations

from functools import cache

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe


@cache
def _message_prefix() -> str:
    return reverse("message", args=[0])[: -len("0/")]


def message_url(pk) -> str:
    """``/messages/<pk>/`` without a ``reverse()`` per row (the history shows 50 rows)."""
    return f"{_message_prefix()}{int(pk)}/"


def _local(value, fmt: str) -> str:
    """``value|date:...`` for the two formats of a history row (strftime is ~10× faster)."""
    return timezone.localtime(value).strftime(fmt)


def outbox_row(m, oob: bool = False) -> str:
    """One history row (``{% outbox_row m %}``). Every value goes through
    ``format_html``'s escaping."""
    if m.sent_at:
        when = _local(m.sent_at, "%Y-%m-%d %H:%M")
    elif m.scheduled_at:
        when = "for " + _local(m.scheduled_at, "%Y-%m-%d %H:%M")
    else:
        when = _local(m.created_at, "%Y-%m-%d %H:%M")
    next_try = ""
    if m.status == "deferred" and m.next_attempt_at:
        next_try = format_html(
            ' <span class="muted small nowrap">· next try {}</span>',
            _local(m.next_attempt_at, "%H:%M"),
        )
    split = getattr(m, "split", None)
    split_words = (
        format_html(' <span class="split muted small nowrap">{}</span>', split.words())
        if split is not None and (split.mixed or split.failed)
        else ""
    )
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
