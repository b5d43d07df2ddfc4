"""Home: counts by status, recent failures, quick compose."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from mailer.counts import by_status
from mailer.models import Draft, OutboxMessage, SmtpAccount
from webui.forms import ComposeForm
from webui.views.outbox import TABS, tab_counts

S = OutboxMessage.Status
RECENT_FAILURES = 8


@login_required
def home(request: HttpRequest) -> HttpResponse:
    mine = OutboxMessage.objects.filter(owner=request.user)
    counts = tab_counts(by_status(request.user))
    counts = [(key, label, counts[key]) for key, label, _statuses in TABS]
    failures = (
        mine.filter(status__in=[S.FAILED, S.UNKNOWN, S.DEFERRED])
        .select_related("account").order_by("-last_attempt_at", "-id")[:RECENT_FAILURES]
    )
    accounts = SmtpAccount.objects.filter(owner=request.user)
    return render(request, "webui/home.html", {
        "counts": counts,
        "failures": failures,
        "paused": [a for a in accounts if a.paused_at],
        "has_accounts": bool(accounts),
        "draft_count": Draft.objects.filter(owner=request.user).count(),
        "quick": ComposeForm(owner=request.user),
    })
