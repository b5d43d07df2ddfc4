"""Every page the site renders is private: it shows one user's mail, accounts or drafts
(or a form bound to their session), so no browser or proxy may keep a copy. Static files
never get here: whitenoise answers them earlier, with their own long-lived caching."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers


def no_store(get_response: Callable[[HttpRequest], HttpResponse]):
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)  # no-cache, no-store, must-revalidate, private
        return response

    return middleware
