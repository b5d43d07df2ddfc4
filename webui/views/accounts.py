"""SMTP accounts: list, add, edit, delete, set default, test connection, resume."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from mailer import quotas, services
from mailer.models import OutboxMessage, SmtpAccount
from webui.forms import AccountForm
from webui.views.common import run_service

CHECK_SESSION_KEY = "webui:account-check:{pk}"


def _get_account_for_user(request: HttpRequest, pk: int) -> SmtpAccount:
    return get_object_or_404(SmtpAccount, pk=pk, owner=request.user)


@login_required
def account_list(request: HttpRequest) -> HttpResponse:
    accounts = SmtpAccount.objects.filter(owner=request.user).order_by("-is_default", "label")
    return render(request, "webui/accounts/list.html", {"accounts": accounts})


@login_required
def account_add(request: HttpRequest) -> HttpResponse:
    form = AccountForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            account = form.save()
            if not SmtpAccount.objects.filter(owner=request.user, is_default=True).exists():
                SmtpAccount.objects.filter(pk=account.pk).update(is_default=True)
        messages.success(
            request, f"Account “{account.label}” added. Test the connection to make sure it works."
        )
        return redirect("account", pk=account.pk)
    return render(request, "webui/accounts/form.html", {"form": form, "account": None},
                  status=400 if form.errors else 200)


@login_required
def account_edit(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    # Read before the form copies the posted values onto the instance.
    paused, fingerprint = account.paused_at is not None, account.connection_fingerprint()
    form = AccountForm(request.POST or None, instance=account, owner=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        if paused and account.connection_fingerprint() != fingerprint:
            # Fixing the settings is what the pause waits for (a wrong password, an
            # untrusted certificate): resume, and the waiting mail goes out. If the fix
            # was not enough, one attempt pauses it again.
            services.resume_account(request.user, account)
            messages.success(request, f"Account “{account.label}” saved and resumed: its "
                             "waiting mail is being sent.")
        else:
            messages.success(request, f"Account “{account.label}” saved.")
        return redirect("account", pk=account.pk)
    return render(request, "webui/accounts/form.html", {"form": form, "account": account},
                  status=400 if form.errors else 200)


def _quota_use(account: SmtpAccount) -> list[dict]:
    """Each quota set on the account with its use, as the worker counts it."""
    names = {timedelta(minutes=1): "minute", timedelta(hours=1): "hour", timedelta(days=1): "day"}
    return [
        {"period": names.get(window, str(window)), "used": used, "limit": limit,
         "percent": min(100, round(100 * used / limit))}
        for window, used, limit in quotas.usage(account)
    ]


@login_required
def account_detail(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    check = request.session.pop(CHECK_SESSION_KEY.format(pk=account.pk), None)
    counts = OutboxMessage.objects.filter(account=account).aggregate(
        waiting=Count("pk", filter=Q(status__in=["queued", "scheduled", "sending", "deferred"])),
        sent=Count("pk", filter=Q(status="sent")),
        failed=Count("pk", filter=Q(status="failed")),
    )
    caps = account.capabilities or {}
    return render(request, "webui/accounts/detail.html", {
        "account": account,
        "check": check,
        "counts": counts,
        "caps": caps,
        "quota": _quota_use(account),
    })


@login_required
@require_POST
def account_delete(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    waiting = OutboxMessage.objects.filter(
        account=account, status__in=["queued", "scheduled", "sending", "deferred"]
    ).count()
    if waiting:
        messages.error(
            request,
            f"“{account.label}” still has {waiting} message(s) waiting to be sent. Cancel them "
            f"in the outbox, or wait until they are sent, then delete the account.",
        )
        return redirect("account", pk=account.pk)
    with transaction.atomic():
        was_default = account.is_default
        account.delete()
        if was_default:
            successor = SmtpAccount.objects.filter(owner=request.user).order_by("label").first()
            if successor:
                SmtpAccount.objects.filter(pk=successor.pk).update(is_default=True)
    messages.success(request, f"Account “{account.label}” deleted.")
    return redirect("accounts")


@login_required
@require_POST
def account_set_default(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    with transaction.atomic():
        SmtpAccount.objects.filter(owner=request.user, is_default=True).exclude(
            pk=account.pk).update(is_default=False)
        SmtpAccount.objects.filter(pk=account.pk).update(is_default=True)
    messages.success(request, f"“{account.label}” is now your default account.")
    if request.POST.get("next") == "list":
        return redirect("accounts")
    return redirect("account", pk=account.pk)


@login_required
@require_POST
def account_check(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    result = run_service(request, services.check_account, account)
    if result is not None:
        # Shown once on the account page (redirect after POST); the transcript is redacted
        # by the client, and the check result holds no secret.
        request.session[CHECK_SESSION_KEY.format(pk=account.pk)] = {
            **asdict(result), "at": timezone.now().isoformat(),
        }
    return redirect("account", pk=account.pk)


@login_required
@require_POST
def account_resume(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    if run_service(request, services.resume_account, account) is not None:
        messages.success(request, f"“{account.label}” resumed: its waiting mail is being sent.")
    return redirect("account", pk=account.pk)


@login_required
@require_POST
def account_send_test(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    message = run_service(request, services.send_test_message, account)
    if message is None:
        return redirect("account", pk=account.pk)
    messages.success(request, f"Test message queued to {account.from_address}.")
    return redirect("message", pk=message.pk)
