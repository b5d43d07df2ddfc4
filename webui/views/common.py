"""Helpers shared by the views: running a service with its errors turned into pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest

from mailer import services


def run_service(request: HttpRequest, action: Callable[..., Any], *args: Any, **kwargs: Any):
    """Call a ``mailer.services`` function; another owner's object becomes a 404 and a state
    that forbids the action becomes an error message (the caller redirects). Returns the
    service's result, or ``None`` when it was refused."""
    try:
        return action(request.user, *args, **kwargs)
    except services.NotFound as exc:
        raise Http404("Not found.") from exc
    except services.ActionNotAllowed as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        for text in exc.messages:
            messages.error(request, text)
    return None


def increment(key: str, timeout: float | None) -> None:
    """Add one to a cache counter, starting it at 1 (``timeout`` runs from the start and is
    never extended, so a window ends on time)."""
    if not cache.add(key, 1, timeout):
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.add(key, 1, timeout)
