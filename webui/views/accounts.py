"""SMTP accounts: list, add, edit, delete, set default, test connection, resume."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from mailer import quotas, services
from mailer.models import ImapSettings, OAuthToken, OutboxMessage, SmtpAccount
from mailer.oauth import providers
from webui.forms import AccountForm
from webui.views.common import run_service


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
        account = services.add_account(request.user, form.save(commit=False))
        messages.success(
            request, f"Account “{account.label}” added. Test the connection to make sure it works."
        )
        return redirect("account", pk=account.pk)
    return render(request, "webui/accounts/form.html", {
        "form": form, "account": None, "providers": providers.configured().values(),
    }, status=400 if form.errors else 200)


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
    counts = OutboxMessage.objects.filter(account=account).aggregate(
        waiting=Count("pk", filter=Q(status__in=["queued", "scheduled", "sending", "deferred"])),
        sent=Count("pk", filter=Q(status="sent")),
        failed=Count("pk", filter=Q(status="failed")),
        bounced=Count("pk", filter=Q(status="bounced")),
    )
    caps = account.capabilities or {}
    return render(request, "webui/accounts/detail.html", {
        "account": account,
        **_check_context(request, account),
        "counts": counts,
        "caps": caps,
        "quota": _quota_use(account),
        "imap": ImapSettings.objects.filter(account=account).first(),
        **_sign_in_context(account),
    })


def _sign_in_context(account: SmtpAccount) -> dict:
    """For an account signed in with a provider: who it signed in as, whether the grant
    was revoked (then only "Reconnect" helps), and the provider, if still configured."""
    token = OAuthToken.objects.filter(account=account).first()
    if token is None:
        return {"oauth": None}
    provider = providers.get(token.provider)
    return {"oauth": token, "oauth_provider": provider,
            "oauth_label": provider.label if provider else token.provider}


@login_required
@require_POST
def account_delete(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    label = account.label
    try:
        successor = services.delete_account(request.user, account)
    except services.ActionNotAllowed as exc:
        messages.error(request, str(exc))
        return redirect("account", pk=pk)
    messages.success(request, f"Account “{label}” deleted."
                     + (f" “{successor.label}” is now your default account." if successor else ""))
    return redirect("accounts")


@login_required
@require_POST
def account_set_default(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    run_service(request, services.set_default, account)
    messages.success(request, f"“{account.label}” is now your default account.")
    if request.POST.get("next") == "list":
        return redirect("accounts")
    return redirect("account", pk=account.pk)


def _check_context(request: HttpRequest, account: SmtpAccount) -> dict:
    check = services.latest_check(request.user, account)
    if (check is not None and check.is_finished and account.paused_at is not None
            and check.finished_at < account.paused_at):
        check = None  # "It works" from before the pause would contradict the notice above it
    return {
        "check": check,
        "deadline": settings.MAILROOM_CHECK_DEADLINE_SECONDS,
    }


@login_required
@require_POST
def account_check(request: HttpRequest, pk: int) -> HttpResponse:
    # The check itself runs in a worker (services.run_check): a server that never answers
    # must not hold a web worker. The page shows it live.
    account = _get_account_for_user(request, pk)
    run_service(request, services.start_check, account)
    return redirect(f"{reverse('account', args=[account.pk])}#check-result")


@login_required
@require_GET
def account_check_status(request: HttpRequest, pk: int) -> HttpResponse:
    account = _get_account_for_user(request, pk)
    context = _check_context(request, account)
    response = render(request, "webui/accounts/check.html", {"account": account, **context})
    if request.headers.get("HX-Request") and context["check"] and context["check"].is_finished:
        # The live poll saw the check end: reload the page, whose other parts it changed
        # too (the capabilities, a pause it lifted).
        response["HX-Refresh"] = "true"
    return response


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
