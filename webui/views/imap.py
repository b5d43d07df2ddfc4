"""An account's IMAP side: set up, change, turn off (the Sent copy, delivery reports)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from mailer import presets, services
from mailer.models import ImapSettings, SmtpAccount
from webui.forms import ImapForm
from webui.views.common import run_service


def _start(account: SmtpAccount) -> ImapSettings:
    """A new IMAP side, filled from the provider's preset when the SMTP host is one."""
    preset = presets.imap_for(account.host)
    if preset is None:
        return ImapSettings(account=account)
    return ImapSettings(account=account, host=preset.host, port=preset.port,
                        security=preset.security, save_to_sent=preset.save_to_sent)


@login_required
def account_imap(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(SmtpAccount, pk=pk, owner=request.user)
    existing = ImapSettings.objects.filter(account=account).first()
    form = ImapForm(request.POST or None, instance=existing or _start(account))
    if request.method == "POST" and form.is_valid():
        try:
            services.save_imap(request.user, account, form.save(commit=False),
                               secret=form.new_secret())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "IMAP saved. Test the connection to see its folders.")
            return redirect("account", pk=account.pk)
    return render(request, "webui/accounts/imap.html", {
        "form": form, "account": account, "imap": existing,
        "preset": presets.imap_for(account.host),
    }, status=400 if form.errors else 200)


@login_required
@require_POST
def account_imap_remove(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(SmtpAccount, pk=pk, owner=request.user)
    run_service(request, services.remove_imap, account)
    messages.success(request, f"IMAP turned off for “{account.label}”: no more copies in "
                     "Sent, no more reading of delivery reports.")
    return redirect("account", pk=account.pk)
