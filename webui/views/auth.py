"""Sign-in with Django's auth views, throttled (see ``webui.throttle``)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from webui import throttle

THROTTLED_MESSAGE = (
    "Too many failed sign-in attempts. For your safety, sign-in is paused for this user "
    f"name for up to {throttle.WINDOW_SECONDS // 60} minutes. Wait, then try again."
)


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def login(request: HttpRequest) -> HttpResponse:
    view = auth_views.LoginView.as_view(redirect_authenticated_user=True)
    if request.method != "POST":
        return view(request)
    username = request.POST.get("username", "")
    if throttle.is_throttled(request, username):
        response = auth_views.LoginView.as_view(
            extra_context={"throttled": THROTTLED_MESSAGE}
        )(_as_get(request))
        response.status_code = 429
        return response
    response = view(request)
    if response.status_code == 302:
        throttle.reset(request, username)
    else:
        throttle.record_failure(request, username)
    return response


def _as_get(request: HttpRequest) -> HttpRequest:
    # Render the empty form (the posted password must not be echoed back).
    request.method = "GET"
    return request


logout = auth_views.LogoutView.as_view()
