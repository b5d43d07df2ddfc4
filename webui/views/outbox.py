"""Outbox and history, the message page and its actions.

Every list runs a constant number of queries whatever the page size: one aggregate for the
tab counts, one for the page (the paginator reuses the tab's count instead of counting
again), plus the account list of the filter. The tab counts are never cached: without a
date or search filter they are the sums ``mailer.counts`` keeps (a few rows, whatever the
number of messages); with one, the filtered messages are counted (see ``_counts_and_page``).
"""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta

from csp.constants import NONE
from csp.decorators import csp
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST

from mailer import progress, services
from mailer.counts import by_status, by_status_and_page, by_status_in
from mailer.models import DeliveryReport, Draft, ImapSettings, OutboxMessage, Recipient, SentCopy
from mailer.search import search
from webui.forms import OutboxFilterForm
from webui.rendering import parse_eml, sanitise_html
from webui.views.common import run_service

S = OutboxMessage.Status
PAGE_SIZE = 50
# (key, label, statuses); "all" has none.
TABS = [
    ("all", "All", ()),
    ("waiting", "Queued & scheduled", (S.QUEUED, S.SCHEDULED, S.SENDING)),
    ("sent", "Sent", (S.SENT,)),
    ("deferred", "Deferred", (S.DEFERRED,)),
    ("failed", "Failed", (S.FAILED,)),
    ("unknown", "Unknown", (S.UNKNOWN,)),
    ("bounced", "Bounced", (S.BOUNCED,)),
    ("cancelled", "Cancelled", (S.CANCELLED,)),
]
# What a history row shows (fewer columns to fetch and convert, 50 times a page).
ROW_FIELDS = ("account_id", "status", "subject", "to_display", "created_at", "sent_at",
              "scheduled_at", "next_attempt_at", "hold_until")
TAB_STATUSES = {key: statuses for key, _label, statuses in TABS}
PENDING = (S.QUEUED, S.SCHEDULED, S.DEFERRED)


def _get_message_for_user(request: HttpRequest, pk: int) -> OutboxMessage:
    return get_object_or_404(
        OutboxMessage.objects.select_related("account"), pk=pk, owner=request.user
    )


def poll_seconds(message: OutboxMessage) -> int | None:
    """How often a page showing this message asks for news; None once it is final."""
    if message.status in OutboxMessage.FINAL_STATUSES:
        return None
    if message.status in (S.QUEUED, S.SENDING) or message.hold_until:
        return 2
    due = message.next_attempt_at
    # Waiting a long time (scheduled for tomorrow, a retry in an hour): ask less often.
    return 30 if due and due - timezone.now() > timedelta(minutes=1) else 5


def _filtered(request: HttpRequest, form: OutboxFilterForm) -> QuerySet[OutboxMessage]:
    qs = OutboxMessage.objects.filter(owner=request.user)
    if not form.is_valid():
        return qs
    data = form.cleaned_data
    if data["account"]:
        qs = qs.filter(account=data["account"])
    tz = timezone.get_current_timezone()
    if data["date_from"]:
        qs = qs.filter(created_at__gte=datetime.combine(data["date_from"], time.min, tz))
    if data["date_to"]:
        end = datetime.combine(data["date_to"] + timedelta(days=1), time.min, tz)
        qs = qs.filter(created_at__lt=end)
    if data.get("failed_recipients"):
        qs = qs.filter(Exists(Recipient.objects.filter(message=OuterRef("pk"),
                                                       status=Recipient.Status.FAILED)))
    if q := data["q"].strip():
        qs = search(qs, q)  # subject, To, and every recipient (Cc and Bcc only there)
    return qs


def tab_counts(statuses: dict[str, int]) -> dict[str, int]:
    """Messages per tab, from messages per status."""
    counts = {key: sum(statuses.get(s, 0) for s in tab) for key, _label, tab in TABS}
    counts["all"] = sum(statuses.values())
    return counts


def _counts_and_page(request: HttpRequest, form: OutboxFilterForm,
                     qs: QuerySet[OutboxMessage], tab: str,
                     number: int) -> tuple[dict[str, int], list[int] | None]:
    """Messages per status under the page's filters (``qs``), exact and live, and for a
    search the ids on page ``number`` of ``tab`` (None: the page query finds them).

    The account filter alone (or none) is what ``mailer.counts`` keeps. A date narrows to
    messages no counter knows: counted, from an index only. A search costs more than its
    count: one query answers both, so the page's rows are then fetched by id."""
    data = form.cleaned_data if form.is_valid() else {}
    if data.get("q", "").strip():
        return by_status_and_page(qs, TAB_STATUSES[tab], offset=(number - 1) * PAGE_SIZE,
                                  limit=PAGE_SIZE)
    if data.get("date_from") or data.get("date_to") or data.get("failed_recipients"):
        return by_status_in(qs), None
    return by_status(request.user, data.get("account")), None


def _page_number(value: str | None) -> int:
    try:
        return max(int(value or 1), 1)
    except ValueError:
        return 1


@login_required
def outbox(request: HttpRequest) -> HttpResponse:
    form = OutboxFilterForm(request.GET or None, owner=request.user)
    tab = request.GET.get("tab", "all")
    if tab not in TAB_STATUSES:
        tab = "all"
    qs = _filtered(request, form)
    number = _page_number(request.GET.get("page"))
    statuses, ids = _counts_and_page(request, form, qs, tab, number)
    counts = tab_counts(statuses)
    if TAB_STATUSES[tab]:
        qs = qs.filter(status__in=TAB_STATUSES[tab])
    # No join for the account's label: the filter lists the user's accounts anyway, and a
    # join makes the database pick a slower plan for the filtered pages.
    rows = qs.only(*ROW_FIELDS).order_by("-created_at", "-id")
    paginator = Paginator(
        rows, PAGE_SIZE,
        allow_empty_first_page=True,
    )
    paginator.count = counts[tab]  # already counted above: no second COUNT(*)
    page = paginator.get_page(request.GET.get("page"))
    if ids is not None and page.number == number:
        # The search's page, already found: its rows by id, without searching again.
        page.object_list = (OutboxMessage.objects.filter(owner=request.user, pk__in=ids)
                            .only(*ROW_FIELDS).order_by("-created_at", "-id"))
    keep = request.GET.copy()
    keep.pop("page", None)
    keep.pop("tab", None)
    accounts = list(form.fields["account"].queryset.only("pk", "label"))
    labels = {a.pk: a.label for a in accounts}
    rows = list(page.object_list)
    _add_splits(rows)
    for message in rows:
        message.account_label = labels.get(message.account_id, "")
    page.object_list = rows
    return render(request, "webui/outbox/list.html", {
        "form": form,
        "accounts": accounts,
        "tab": tab,
        "tabs": [(key, label, counts[key]) for key, label, _s in TABS],
        "page": page,
        "query": keep.urlencode(),
        **_poller(page.object_list),
    })


def _add_splits(rows: list[OutboxMessage]) -> None:
    """Each row's recipients by outcome ("2 sent · 1 failed · 1 waiting"), for the whole
    page in one grouped query on the recipients' message index."""
    counts: dict[int, dict[str, int]] = {m.pk: {} for m in rows}
    grouped = (Recipient.objects.filter(message_id__in=list(counts))
               .values_list("message_id", "status").annotate(n=Count("id")).order_by())
    for message_id, status, n in grouped:
        counts[message_id][status] = n
    for m in rows:
        m.split = progress.split(counts[m.pk])


def _poller(messages: list[OutboxMessage]) -> dict:
    """The page's one live-update poll: the ids of its rows still in flight, asked for as
    often as the most urgent of them needs (none in flight: no poll at all)."""
    polls = {m.pk: poll_seconds(m) for m in messages}
    waiting = [pk for pk, poll in polls.items() if poll]
    return {
        "live_ids": ",".join(map(str, waiting)),
        "live_poll": min((polls[pk] for pk in waiting), default=None),
    }


@login_required
def outbox_live(request: HttpRequest) -> HttpResponse:
    """News for the in-flight rows of a history page, in one request: each row as an htmx
    out-of-band swap, and the poller again with the rows still in flight."""
    try:
        ids = [int(i) for i in request.GET.get("ids", "").split(",") if i][:PAGE_SIZE]
    except ValueError:
        ids = []
    rows = list(
        OutboxMessage.objects.filter(owner=request.user, pk__in=ids)
        .select_related("account")
        .only(*ROW_FIELDS, "account__label")
        .order_by("-created_at", "-id")
    )
    _add_splits(rows)
    for message in rows:
        message.account_label = message.account.label if message.account else ""
    return render(request, "webui/outbox/live_rows.html", {"rows": rows, **_poller(rows)})


def _live_context(request: HttpRequest, message: OutboxMessage) -> dict:
    recipients = list(message.recipients.all())
    attempts = list(message.delivery_attempts.all())
    now = timezone.now()
    can_undo = bool(
        message.status == S.SCHEDULED and message.hold_until and message.hold_until > now
    )
    step = progress.next_step(message, recipients, now)
    refused = [r for r in recipients if r.status != Recipient.Status.ACCEPTED]
    return {
        "m": message,
        "recipients": recipients,
        "waiting_recipients": [r for r in refused if r.status in Recipient.RETRY_STATUSES],
        "attempts": attempts,
        "poll": poll_seconds(message),
        "can_undo": can_undo,
        "undo_seconds": math.ceil((message.hold_until - now).total_seconds()) if can_undo else 0,
        "can_cancel": step.can_cancel and not can_undo,
        "can_retry": step.can_retry_now,
        "can_resend": message.status == S.UNKNOWN,
        "step": step,
        "split": progress.split([r.status for r in recipients]),
        "sent_copy": _sent_copy(message),
        "reports": list(message.delivery_reports.all()),
        # The message's own reason is shown only when it is not the recipients' reasons
        # joined (each recipient's is in its row, once).
        "message_reason": (message.wait_reason if message.status in PENDING else "")
        or message.last_error if refused and not all(r.code for r in refused) else "",
    }


def _sent_copy(message: OutboxMessage) -> dict | None:
    """The copy in the Sent folder, in words: saved / waiting / not saved / off; None when
    the account has no IMAP side and there was never a copy."""
    copy = SentCopy.objects.filter(message=message).first()
    if copy is not None:
        return {"status": copy.status, "label": copy.get_status_display(),
                "words": copy.detail, "folder": copy.folder}
    imap = ImapSettings.objects.filter(account_id=message.account_id).first()
    if imap is None:
        return None
    if not imap.save_to_sent:
        return {"status": "off", "label": "Off",
                "words": "Saving a copy in the Sent folder is turned off for this account."}
    if message.status in (S.SENT, S.BOUNCED) and (message.last_attempt_at is None
                                                 or message.last_attempt_at < imap.enabled_at):
        return {"status": "off", "label": "Not saved",
                "words": "Sent before IMAP was set up for this account: no copy is saved."}
    if message.status in (S.SENT, S.BOUNCED):
        return {"status": "pending", "label": SentCopy.Status.PENDING.label,
                "words": "A worker saves it in the Sent folder in a moment."}
    return {"status": "later", "label": "After sending",
            "words": "Once the server accepts it, a copy goes to the Sent folder."}


@login_required
def message_report(request: HttpRequest, pk: int, report: int) -> HttpResponse:
    """A delivery report as it arrived (raw), to download."""
    message = _get_message_for_user(request, pk)
    found = get_object_or_404(DeliveryReport, pk=report, message=message)
    return FileResponse(
        found.raw.open("rb"), as_attachment=True,
        filename=f"message-{message.pk}-report-{found.pk}.eml", content_type="message/rfc822",
    )


@login_required
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    message = _get_message_for_user(request, pk)
    try:
        parsed = parse_eml(message.read_eml())
    except OSError:
        parsed = parse_eml(b"")
        parsed.problem = "The stored copy of this message is missing from the server's disk."
    return render(request, "webui/outbox/message.html", {
        **_live_context(request, message), "parsed": parsed,
    })


@login_required
def message_status(request: HttpRequest, pk: int) -> HttpResponse:
    message = _get_message_for_user(request, pk)
    return render(request, "webui/outbox/live.html", _live_context(request, message))


@login_required
@xframe_options_sameorigin
@csp({
    # The mail's HTML, already sanitised by nh3: still no scripts, no remote anything.
    "default-src": [NONE],
    "img-src": ["data:"],
    "style-src": ["'unsafe-inline'"],
    "font-src": [NONE],
    "form-action": [NONE],
    "base-uri": [NONE],
    "frame-ancestors": ["'self'"],
    "sandbox": [True],
})
def message_html(request: HttpRequest, pk: int) -> HttpResponse:
    message = _get_message_for_user(request, pk)
    try:
        html = parse_eml(message.read_eml()).html
    except OSError:
        html = ""
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<base target="_blank"></head><body>' + sanitise_html(html) + "</body></html>"
    )
    response = HttpResponse(page, content_type="text/html; charset=utf-8")
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_required
def message_eml(request: HttpRequest, pk: int) -> HttpResponse:
    message = _get_message_for_user(request, pk)
    return FileResponse(
        message.eml.open("rb"), as_attachment=True, filename=f"message-{message.pk}.eml",
        content_type="message/rfc822",
    )


def _act(request: HttpRequest, pk: int, action, done: str, **kwargs) -> HttpResponse:
    """Run a service on the user's message; a returned draft opens, otherwise back to it."""
    message = _get_message_for_user(request, pk)
    result = run_service(request, action, message, **kwargs)
    if result is None:
        return redirect("message", pk=message.pk)
    messages.success(request, done)
    if isinstance(result, Draft):
        return redirect("draft", pk=result.pk)
    return redirect("message", pk=message.pk)


@login_required
@require_POST
def message_undo(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, services.undo_send,
                "Sending undone. Your draft is back, exactly as it was.")


@login_required
@require_POST
def message_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, services.cancel, "Cancelled: this message will not be sent.")


@login_required
@require_POST
def message_retry(request: HttpRequest, pk: int) -> HttpResponse:
    # A sent message with refused recipients: retry only those that failed.
    sent = OutboxMessage.objects.filter(pk=pk, owner=request.user, status=S.SENT).exists()
    return _act(request, pk, services.retry_now, "Retrying now.", failed_only=sent)


@login_required
@require_POST
def message_resend(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, services.resend_unknown,
                "Sending again. If the server already had it, the recipients may get it twice.")


@login_required
@require_POST
def message_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, services.edit_as_new_draft,
                "A new draft with this message's content. Change it and send.")
