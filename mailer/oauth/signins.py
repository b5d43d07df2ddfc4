""""Sign in with …" as the web and the command line run it: two worker steps around the
user's visit to the provider, each sign-in one ``OAuthSignIn`` row.

1. :func:`start` (a web request, or the command line): the row, with a fresh ``state``,
   PKCE verifier and nonce; the state also goes into the user's session. Nothing is sent.
2. :func:`run` → prepare (a worker): the provider's authorization URL. A generic
   provider's endpoints come from its discovery document, which is outbound: never in a
   web request. The sign-in page then sends the browser there.
3. :func:`callback` (a web request): the provider sends the browser back with ``code`` and
   ``state``. The state must be one this session started (it is popped: it works once),
   its row the same user's, still waiting at the provider and younger than
   ``SIGN_IN_MINUTES``. The code is stored encrypted and a worker is woken.
4. :func:`run` → exchange (a worker): the code for tokens, the ID token checked
   (``flow.finish``), the account created or reconnected (``services.save_sign_in``). The
   code and the verifier are wiped, however it ends.

A step no worker took within the check deadline ends with words that say so
(:func:`current`), as a connection test does; the page never spins forever.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from mailer import crypto, services
from mailer.models import OAuthSignIn, SmtpAccount
from mailer.oauth import flow, providers
from mailer.oauth.tokens import OAuthError

log = logging.getLogger("mailer.oauth")

__all__ = ["SESSION_KEY", "SIGN_IN_MINUTES", "callback", "current", "run", "start"]

Status = OAuthSignIn.Status
SESSION_KEY = "mailroom_oauth_states"
#: How long the user may take at the provider (its codes live about as long).
SIGN_IN_MINUTES = 10
_KEEP_IN_SESSION = 5

_NOT_YOURS = (
    "This sign-in was not started in this browser by you, or it was already completed, so "
    "Mailroom did not use it. Start again with “Sign in with …” on the account form."
)
_TOO_LATE = (
    f"The sign-in took longer than {SIGN_IN_MINUTES} minutes, so Mailroom no longer "
    "accepts it. Start again."
)


def start(user, provider_key: str, *, redirect_uri: str, account: SmtpAccount | None = None,
          label: str = "", session=None) -> OAuthSignIn:
    """Begin a sign-in with the provider ``provider_key`` for a new account (``label``) or,
    with ``account``, to reconnect it. ``session``: the web session the state is bound to.
    Raises ``ActionNotAllowed`` (not configured, rate limit) or ``NotFound``."""
    from mailer import tasks

    provider = providers.get(provider_key)
    if provider is None:
        raise services.ActionNotAllowed(
            f"Sign-in with “{provider_key}” is not set up on this Mailroom. Add the account "
            "with a password, or ask the operator to configure the provider."
        )
    if account is not None:
        services._own(user, account)
    services.rate_limit(user)
    started = flow.start()
    with transaction.atomic():
        row = OAuthSignIn.objects.create(
            owner=user, provider=provider.key, account=account, label=label[:100],
            state=started.state, verifier_encrypted=crypto.encrypt(started.code_verifier),
            nonce=started.nonce, redirect_uri=redirect_uri, step_at=timezone.now(),
        )
        tasks.wake_sign_in(row.pk)
    if session is not None:
        session[SESSION_KEY] = [*session.get(SESSION_KEY, []), row.state][-_KEEP_IN_SESSION:]
    return row


def current(user, pk: int) -> OAuthSignIn:
    """The user's sign-in ``pk``, a step whose worker never came (or was lost) ended with
    words that say so. Raises ``NotFound``."""
    row = services._own(user, OAuthSignIn.objects.filter(pk=pk).first())
    if row.is_finished:
        return row
    now = timezone.now()
    deadline = timedelta(seconds=services.check_deadline())
    if row.status == Status.AT_PROVIDER:
        if now > row.step_at + timedelta(minutes=SIGN_IN_MINUTES):
            _end(row, Status.AT_PROVIDER, Status.FAILED, _TOO_LATE)
    elif now > row.step_at + deadline + timedelta(seconds=services.CHECK_GRACE_SECONDS):
        words = services.NO_WORKER if row.claimed_at is None else services.WORKER_LOST
        _end(row, row.status, Status.FAILED,
             words.format(deadline=services.check_deadline(), what="sign-in"))
    return row


def callback(user, session, params) -> OAuthSignIn:
    """The browser is back from the provider with ``params`` (the query string). Raises
    ``ActionNotAllowed`` for a state this session did not start, one already used, or one
    older than ``SIGN_IN_MINUTES``."""
    from mailer import tasks

    state = params.get("state") or ""
    states = list(session.get(SESSION_KEY, []))
    if not state or state not in states:
        raise services.ActionNotAllowed(_NOT_YOURS)
    states.remove(state)  # works once, whatever follows
    session[SESSION_KEY] = states
    row = OAuthSignIn.objects.filter(state=state, owner=user).first()
    if row is None:
        raise services.ActionNotAllowed(_NOT_YOURS)
    row = current(user, row.pk)
    if row.status != Status.AT_PROVIDER:
        raise services.ActionNotAllowed(row.message or _NOT_YOURS)
    label = _label(row)
    if params.get("error"):
        said = " ".join(str(params.get(k, ""))[:300] for k in ("error", "error_description"))
        words = (f"You did not allow Mailroom at {label}, so nothing was saved."
                 if params["error"] == "access_denied" else
                 f"{label} could not complete the sign-in, so nothing was saved.")
        _end(row, Status.AT_PROVIDER, Status.FAILED,
             f"{words} Start again if you want to connect the account. "
             f"{label} said: “{said.strip()}”")
        return current(user, row.pk)
    code = params.get("code") or ""
    if not code:
        _end(row, Status.AT_PROVIDER, Status.FAILED,
             f"{label} sent the browser back without a sign-in code. Start again.")
        return current(user, row.pk)
    fresh = timezone.now() - timedelta(minutes=SIGN_IN_MINUTES)
    with transaction.atomic():
        moved = OAuthSignIn.objects.filter(
            pk=row.pk, status=Status.AT_PROVIDER, step_at__gt=fresh
        ).update(status=Status.EXCHANGING, code_encrypted=crypto.encrypt(code),
                 step_at=timezone.now(), claimed_at=None)
        if moved:
            tasks.wake_sign_in(row.pk)
    if not moved:
        raise services.ActionNotAllowed(_TOO_LATE)
    return current(user, row.pk)


def run(pk: int) -> str | None:
    """The worker's side: the current step of sign-in ``pk`` (the URL, or the exchange),
    claimed so that only one worker runs it. Returns the status it ended in, or None when
    there was nothing to do."""
    now = timezone.now()
    limit = now - timedelta(seconds=services.check_deadline())
    if not OAuthSignIn.objects.filter(
        pk=pk, status__in=[Status.PREPARING, Status.EXCHANGING], claimed_at__isnull=True,
        step_at__gt=limit,
    ).update(claimed_at=now):
        return None
    row = OAuthSignIn.objects.select_related("account", "owner").get(pk=pk)
    provider = providers.get(row.provider)
    if provider is None:
        return _end(row, row.status, Status.FAILED,
                    f"Sign-in with “{row.provider}” is no longer set up on this Mailroom.")
    if row.status == Status.PREPARING:
        return _prepare(row, provider)
    return _exchange(row, provider)


def _prepare(row: OAuthSignIn, provider) -> str:
    started = flow.Started(row.state, crypto.decrypt(row.verifier_encrypted), row.nonce)
    hint = row.account.oauth.email if row.account and hasattr(row.account, "oauth") else ""
    try:
        url = flow.begin(provider, row.redirect_uri, started, login_hint=hint)
    except OAuthError as exc:
        return _end(row, Status.PREPARING, Status.FAILED, str(exc))
    OAuthSignIn.objects.filter(pk=row.pk, status=Status.PREPARING).update(
        status=Status.AT_PROVIDER, authorize_url=url, step_at=timezone.now(), claimed_at=None
    )
    return Status.AT_PROVIDER


def _exchange(row: OAuthSignIn, provider) -> str:
    try:
        identity = flow.finish(
            provider, code=crypto.decrypt(row.code_encrypted),
            code_verifier=crypto.decrypt(row.verifier_encrypted),
            redirect_uri=row.redirect_uri, nonce=row.nonce,
        )
        account = services.save_sign_in(row.owner, provider, identity, account=row.account,
                                        label=row.label)
    except (OAuthError, ValidationError, services.ActionNotAllowed) as exc:
        words = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return _end(row, Status.EXCHANGING, Status.FAILED, words)
    log.info("oauth sign-in=%s account=%s done", row.pk, account.pk)
    verb = "reconnected" if row.account_id else "added"
    return _end(row, Status.EXCHANGING, Status.DONE,
                f"Signed in to {provider.label} as {identity.email}: account “{account.label}” "
                f"{verb}.", result=account)


def _end(row: OAuthSignIn, was: str, status: str, message: str, *,
         result: SmtpAccount | None = None) -> str:
    """End the sign-in (conditional on its step: a worker that moved on meanwhile wins),
    wiping the code and the verifier."""
    now = timezone.now()
    OAuthSignIn.objects.filter(pk=row.pk, status=was).update(
        status=status, message=message, result=result, finished_at=now, step_at=now,
        code_encrypted="", verifier_encrypted="", claimed_at=None,
    )
    row.refresh_from_db()
    return row.status


def _label(row: OAuthSignIn) -> str:
    provider = providers.get(row.provider)
    return provider.label if provider else row.provider
