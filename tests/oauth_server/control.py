"""The test server's own endpoints and the middleware that counts and misbehaves.

``/test/stats`` — token requests so far, by grant type (JSON);
``/test/mode?token=ok|down|slow|html|garbage`` — how the token endpoint answers next
(``discovery=ok|html``: the discovery document);
``/test/revoke?user=NAME`` — withdraw the user's consent: every token of theirs is revoked,
so the next refresh gets ``invalid_grant``.
Each needs the ``X-Test-Control`` header (the server's control key): loopback only, but a
browser under test must not reach them by accident.
"""

import json
import os
import threading
import time
from collections import Counter

from django.http import HttpResponse, JsonResponse

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_mode = {"token": "ok", "discovery": "ok"}
SLOW_SECONDS = 3.0


def _allowed(request) -> bool:
    return request.headers.get("X-Test-Control") == os.environ["OAUTH_TEST_SECRET_KEY"]


class Misbehave:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "openid-configuration" in request.path and _mode["discovery"] == "html":
            return HttpResponse("<html><body><h1>502 Bad Gateway</h1></body></html>",
                                status=502, content_type="text/html")
        if request.path == "/o/token/" and request.method == "POST":
            with _lock:
                _counts[request.POST.get("grant_type", "")] += 1
                mode = _mode["token"]
            if mode == "down":
                return HttpResponse("Service Unavailable", status=503, content_type="text/plain")
            if mode == "html":
                return HttpResponse("<html><body><h1>Sign in</h1></body></html>",
                                    content_type="text/html")
            if mode == "garbage":
                return HttpResponse(b"{\x00not json", content_type="application/json")
            if mode == "slow":
                time.sleep(SLOW_SECONDS)
        return self.get_response(request)


def stats(request):
    if not _allowed(request):
        return HttpResponse(status=403)
    with _lock:
        return JsonResponse(dict(_counts))


def mode(request):
    if not _allowed(request):
        return HttpResponse(status=403)
    with _lock:
        for key in _mode:
            _mode[key] = request.GET.get(key, "ok")
    return JsonResponse(_mode)


def revoke(request):
    if not _allowed(request):
        return HttpResponse(status=403)
    from oauth2_provider.models import AccessToken, Grant, IDToken, RefreshToken

    user = request.GET["user"]
    n = 0
    for rt in RefreshToken.objects.filter(user__username=user, revoked__isnull=True):
        rt.revoke()
        n += 1
    AccessToken.objects.filter(user__username=user).delete()
    IDToken.objects.filter(user__username=user).delete()
    Grant.objects.filter(user__username=user).delete()
    return HttpResponse(json.dumps({"revoked": n}), content_type="application/json")
