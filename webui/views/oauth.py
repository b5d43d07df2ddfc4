""""Sign in with …": start a sign-in, the provider's way back (the callback), and the page
that follows each step as a worker runs it (``mailer.oauth.signins``). No request here
talks to the provider: the browser is only sent there and back."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from mailer import services
from mailer.models import OAuthSignIn, SmtpAccount
from mailer.oauth import providers, signins
from webui.views.common import run_service

Status = OAuthSignIn.Status


def redirect_uri(request: HttpRequest) -> str:
    """Where the provider sends the browser back: the address to register at the provider.
    Built from the request's host, which ALLOWED_HOSTS has vetted."""
    return request.build_absolute_uri(reverse("oauth_callback"))


@login_required
@require_POST
def oauth_start(request: HttpRequest, provider: str) -> HttpResponse:
    account = None
    if request.POST.get("account", "").isdigit():
        account = get_object_or_404(SmtpAccount, pk=int(request.POST["account"]),
                                    owner=request.user)
    row = run_service(request, signins.start, provider, redirect_uri=redirect_uri(request),
                      account=account, label=request.POST.get("label", ""),
                      session=request.session)
    if row is None:
        return redirect("account", pk=account.pk) if account else redirect("account_add")
    return redirect("oauth_sign_in", pk=row.pk)


@login_required
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    try:
        row = signins.callback(request.user, request.session, request.GET)
    except services.ActionNotAllowed as exc:
        return render(request, "webui/oauth/refused.html", {"reason": str(exc)}, status=400)
    return redirect("oauth_sign_in", pk=row.pk)


@login_required
@require_GET
def oauth_sign_in(request: HttpRequest, pk: int) -> HttpResponse:
    row = run_service(request, signins.current, pk)
    htmx = bool(request.headers.get("HX-Request"))
    if row.status == Status.DONE and row.result_id:
        messages.success(request, row.message)
        target = reverse("account", args=[row.result_id])
        return HttpResponseClientRedirect(target) if htmx else redirect(target)
    if htmx and row.status == Status.AT_PROVIDER:
        return HttpResponseClientRedirect(row.authorize_url)
    provider = providers.get(row.provider)
    context = {"sign_in": row, "label": provider.label if provider else row.provider}
    template = "webui/oauth/step.html" if htmx else "webui/oauth/sign_in.html"
    return render(request, template, context)

